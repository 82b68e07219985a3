"""The Train & compare tab: the form, the live job, the results."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import gradio as gr

from gera.data import public_task_options_help
from gera.encoders import default_encoders, list_encoders
from gera.encoders.hub import hub_reachable
from gera.errors import GeraError
from gera.results import TrainStep
from gera.geometry import KERNELS
from gera.methods import METHODS, featured, label
from gera.ui import charts, tables
from gera.ui.config import BUDGETS, HUB_SUGGESTIONS, AppConfig
from gera.ui.device import gpu
from gera.ui.errors import errors_as_ui
from gera.ui.jobs import BackgroundJob
from gera.ui.sources import SESSION_KEY
from gera.ui.form import FOLDER, FORM_FIELDS, UPLOAD, TrainForm
from gera.ui.limits import Guards, visitor_of
from gera.ui.training import ProgressTracker, Session, run_training, task_choices
from gera.ui.workspace import session_folder

PAIRS = [("image ↔ text", "image"), ("speech ↔ text", "speech")]


def _options_help(task: str, public: bool) -> str | None:
    """On a public app, which options the chosen task takes (nothing else is accepted)."""
    if not public:
        return None
    try:
        return public_task_options_help("folder:<path>" if task in (UPLOAD, FOLDER) else task)
    except GeraError:  # a task the form does not offer: training will refuse it
        return None


def encoder_choices(modality: str, hub: bool, allowed=None) -> list[str]:
    """The offline encoders of ``modality``, and the Hub suggestions where the Hub answers; on
    an app with an allow-list, only those of them it allows."""
    names = list_encoders(modality) + (HUB_SUGGESTIONS[modality] if hub else [])
    return names if allowed is None else [n for n in names if n in allowed]


@dataclass
class TrainTab:
    inputs: dict  # TrainForm field → its component
    train_button: gr.Button
    cancel_button: gr.Button
    status: gr.Markdown
    results: gr.Dataframe
    differences: gr.Dataframe
    curves: gr.Plot
    metrics_plot: gr.Plot
    downloads: gr.File


def build(config: AppConfig) -> TrainTab:
    d = config.defaults
    hub = hub_reachable(timeout=1.0)
    gr.Markdown(f"Pick two frozen encoders and a paired budget, then train {label(featured())} and "
                "the baselines on the same seeds, pairs and tuning budget. Small jobs finish in "
                "about a minute on a CPU once the embeddings are cached. "
                + config.limits.describe())
    with gr.Row():
        with gr.Column(scale=1):
            pair = gr.Radio(PAIRS, value=d.pair, label="Modalities")
            # Custom values pass the dropdown so API users can pick any pair's task (the choices
            # follow the pair in the page only); resolve_task refuses anything not offered.
            task = gr.Dropdown(task_choices(d.pair, config.allow_server_folders), value=d.task,
                               label="Task / dataset", allow_custom_value=True)
            upload = gr.File(label="Zip of pairs (captions.csv + images, or transcripts.csv + "
                                   "audio)", file_types=[".zip"], visible=d.task == UPLOAD)
            folder = gr.Textbox(d.folder, label="Folder on this machine", visible=d.task == FOLDER,
                                placeholder="/path/to/folder with captions.csv")
            with gr.Row():
                allowed = config.allowed_encoders
                encoder_a = gr.Dropdown(encoder_choices(d.pair, hub, allowed), value=d.encoder_a,
                                        label="Encoder A", allow_custom_value=True)
                encoder_b = gr.Dropdown(encoder_choices("text", hub, allowed), value=d.encoder_b,
                                        label="Encoder B (text)", allow_custom_value=True)
            budgets = gr.CheckboxGroup([str(b) for b in BUDGETS], value=list(d.budgets),
                                       label="Paired budget N (log-spaced; tick several for a sweep)")
            methods = gr.CheckboxGroup(list(METHODS), value=list(d.methods), label="Methods")
        with gr.Column(scale=1):
            with gr.Row():
                unpaired_a = gr.Textbox(d.unpaired_a, label="Unpaired A pool",
                                        placeholder="task default")
                unpaired_b = gr.Textbox(d.unpaired_b, label="Unpaired B pool",
                                        placeholder="task default")
            alpha = gr.Slider(0, 100, value=d.alpha, step=0.1, label=f"α, {label(featured())}'s "
                              "geometric weight (used as set when the tuning grid is 0; 0 = "
                              "contrastive)")
            with gr.Row():
                k = gr.Slider(1, 50, value=d.k, step=1, label="K neighbours per anchor")
                kernel = gr.Dropdown(list(KERNELS), value=d.kernel, label="Kernel")
            with gr.Row():
                most_steps = min(3000, config.limits.max_steps or 3000)
                max_steps = gr.Slider(10, most_steps, value=min(d.max_steps, most_steps), step=10,
                                      label="Max training steps (early stopping on validation)")
                seeds = gr.Slider(1, 5, value=d.seeds, step=1, label="Seeds")
            grid_size = gr.Slider(0, 3, value=d.grid_size, step=1,
                                  label="Tuning grid per method (the same for all; 3 = the CLI's)")
            task_options = gr.Textbox(d.task_options, label="Task options (KEY=VALUE, …)",
                                      placeholder="e.g. n_test_pairs=200",
                                      info=_options_help(d.task, config.public))
    with gr.Row():
        train_button = gr.Button("Train & compare", variant="primary")
        cancel_button = gr.Button("Cancel", variant="stop")
    status = gr.Markdown("", elem_classes="gera-status")
    results = gr.Dataframe(headers=["N", "method", "test metrics appear here after training"],
                           label="Results on the test data: mean ± std over seeds, %",
                           interactive=False, wrap=True)
    heading = f"{label(featured())} −"
    differences = gr.Dataframe(headers=["N", heading, "paired differences appear here"],
                               label=f"{heading} each baseline, paired over the same seeds "
                                     "(percentage points)", interactive=False, wrap=True)
    with gr.Row():
        curves = gr.Plot(label="Training curves")
        metrics_plot = gr.Plot(label="Metrics")
    downloads = gr.File(label="Your alignments (safetensors + JSON) and the full results",
                        file_count="multiple", interactive=False, height=160)

    @errors_as_ui
    def pair_chosen(pair_value):
        choices = task_choices(pair_value, config.allow_server_folders)
        default_a, default_b = default_encoders(pair_value)
        texts = encoder_choices("text", hub, config.allowed_encoders)
        return (gr.Dropdown(choices=choices, value=choices[0][1]),
                gr.Dropdown(choices=encoder_choices(pair_value, hub, config.allowed_encoders),
                            value=default_a),
                # the pair's default where this app offers it (espeak-ng installed, allowed)
                gr.Dropdown(value=default_b if default_b in texts else texts[0] if texts else None))

    @errors_as_ui
    def task_chosen(task_value):
        return (gr.File(visible=task_value == UPLOAD), gr.Textbox(visible=task_value == FOLDER),
                gr.Textbox(info=_options_help(task_value, config.public)))

    pair.change(pair_chosen, pair, [task, encoder_a, encoder_b], show_progress="hidden",
                api_visibility="private")
    task.change(task_chosen, task, [upload, folder, task_options], show_progress="hidden",
                api_visibility="private")
    inputs = dict(pair=pair, task=task, upload=upload, folder=folder, encoder_a=encoder_a,
                  encoder_b=encoder_b, budgets=budgets, unpaired_a=unpaired_a,
                  unpaired_b=unpaired_b, methods=methods, alpha=alpha, k=k, kernel=kernel,
                  max_steps=max_steps, seeds=seeds, grid_size=grid_size, task_options=task_options)
    assert tuple(inputs) == FORM_FIELDS, "every TrainForm field needs its component, in order"
    return TrainTab(inputs, train_button, cancel_button, status, results, differences, curves,
                    metrics_plot, downloads)


def _source_updates(session: Session, shipped_choices: dict, modalities: Sequence[str | None]):
    """New choices for the model selectors of the other tabs: the run joins the shipped ones."""
    own = (session.models.title, SESSION_KEY)
    out = []
    for modality in modalities:
        choices = shipped_choices[modality]
        if modality in (None, session.models.modality_a):
            out.append(gr.Dropdown(choices=[own, *choices], value=SESSION_KEY))
        else:
            out.append(gr.Dropdown(choices=choices))
    return out


def wire(tab: TrainTab, config: AppConfig, guards: Guards, session: gr.State,
         shipped_choices: dict, sources: list[tuple[gr.Dropdown, str | None]]) -> None:
    """``sources``: the other tabs' model selectors and the A modality each lists (None: all)."""
    outputs = [tab.status, tab.results, tab.differences, tab.curves, tab.metrics_plot,
               tab.downloads, session, *[s for s, _ in sources]]
    modalities = [m for _, m in sources]
    skip_rest = [gr.skip()] * (len(outputs) - 4)

    # API parameters take their names and defaults from the components (inputs_kwargs); a file
    # component has no initial value, so ``upload``'s default (none) is the parameter's.
    # The visitor's limits are checked here, in the app's own process: on ZeroGPU what ``gpu``
    # wraps runs in another process, whose bookkeeping would be lost.
    @errors_as_ui
    def train(request: gr.Request, *, progress=gr.Progress(), upload=None, **values):
        visitor = visitor_of(request)
        guards.running.start(visitor)  # first: a refused start spends none of the hour's jobs
        try:
            guards.trains.check(visitor)
            yield from run_job(TrainForm(upload=upload, **values),
                               session_folder(request.session_hash), progress)
        finally:
            guards.running.finish(visitor)

    @gpu(config.limits.job_seconds)
    def run_job(form: TrainForm, folder, progress):
        tracker = ProgressTracker()
        job = BackgroundJob(lambda report, should_stop: run_training(
            form, config, folder, report, should_stop), config.limits.job_seconds)
        try:
            for batch in job.batches():
                for event in batch:
                    tracker.update(event)
                progress(tracker.fraction, desc=tracker.text)
                trained = any(isinstance(e, TrainStep) for e in batch)
                live = charts.training_curves(tracker.live) if trained else gr.skip()
                yield [f"⏳ {tracker.text}", gr.skip(), gr.skip(), live] + skip_rest
        finally:  # the user cancelled or left: stop the worker at its next step or batch
            job.stop()
        if job.timed_out:
            raise GeraError(f"The job ran past this app's limit of {config.limits.job_seconds:g} s "
                            "and was stopped. Choose fewer budgets, seeds, methods or steps.")
        if job.error is not None:
            raise job.error
        run: Session = job.result
        wall = sum(r.wall_s for r in run.results)
        done = (f"✅ Done in {wall:.0f} s. Your alignments are in this session: the "
                "Neighbourhoods and Retrieval tabs now offer them (“Your run”).")
        yield [done, tables.results_table(run.results), tables.differences_table(run.results),
               charts.training_curves(run.histories), charts.metrics_figure(run.results),
               run.downloads, run, *_source_updates(run, shipped_choices, modalities)]

    event = tab.train_button.click(train, inputs_kwargs=tab.inputs, outputs=outputs, api_name="train",
                                   concurrency_limit=config.train_concurrency,
                                   concurrency_id="training")
    # Gradio's cancel closes the job's generator, whose ``finally`` stops the worker.
    tab.cancel_button.click(lambda: "Cancelled.", None, tab.status, cancels=[event],
                            queue=False, api_visibility="private")
