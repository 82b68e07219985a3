"""Look and the one piece of browser code: theme, CSS, and the plot-click bridge.

Gradio's Plot component has no point-selection event, so a click on a point in the
Neighbourhoods plots is forwarded by JavaScript: plotly's ``plotly_click`` gives the point's
``customdata`` (its position among the plotted points), which is typed into the "selected point"
number box, whose change event redraws the highlight on the server.
"""
import gradio as gr

from gera.ui.limits import public_mode

THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="amber", neutral_hue="slate")

CSS = """
.gera-header h1 { margin-bottom: 0; }
.gera-device { opacity: 0.8; font-size: 0.9em; }
.gera-status { min-height: 2.5em; }
"""

SELECTED_POINT_ID = "nbhd-selected"
CLICKABLE_PLOT_CLASS = "nbhd-clickable"

JS = """
() => {
  const attach = () => {
    document.querySelectorAll('.%(plots)s .js-plotly-plot').forEach((plot) => {
      if (plot.dataset.geraClick || typeof plot.on !== 'function') return;
      plot.dataset.geraClick = '1';
      plot.on('plotly_click', (event) => {
        const point = event.points && event.points[0];
        const input = document.querySelector('#%(selected)s input');
        if (!point || point.customdata === undefined || !input) return;
        input.value = point.customdata;
        input.dispatchEvent(new Event('input', {bubbles: true}));
        input.dispatchEvent(new KeyboardEvent('keypress', {key: 'Enter', bubbles: true}));
        input.dispatchEvent(new Event('blur', {bubbles: true}));
      });
    });
  };
  new MutationObserver(attach).observe(document.body, {childList: true, subtree: true});
}
""" % {"plots": CLICKABLE_PLOT_CLASS, "selected": SELECTED_POINT_ID}


def launch_kwargs() -> dict:
    """What ``launch`` needs besides the address (Gradio 6 takes theme, css and js there)."""
    # A public app shows only the messages the callbacks chose (errors_as_ui), never the text of
    # an exception that escaped them.
    return {"theme": THEME, "css": CSS, "js": JS, "show_error": not public_mode(),
            "max_file_size": "200mb", "ssr_mode": False}
