"""The Retrieval playground: text → images, image → captions, speech → transcripts, with GeRA
and a baseline side by side."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from gera.methods import METHODS, featured, featured_twin, label
from gera.ui import budget_selector, retrieval
from gera.ui.errors import errors_as_ui
from gera.ui.limits import RateLimiter, visitor_of
from gera.ui.models import ShippedModels
from gera.ui.sources import resolve

TEXT_EXAMPLES = ["a large cat face in the centre, on a blue background",
                 "a small red apple on the left and a large dog face on the right, on a white background",
                 "a pizza", "an ankle boot"]
RESULT_HEADERS = ["rank", "text", "score"]


@dataclass
class RetrievalTab:
    image_source: gr.Dropdown
    speech_source: gr.Dropdown


def _first(choices):
    return choices[0][1] if choices else None


def side_by_side(component, ours: str, baseline: str, **options):
    """The featured method's answer beside the baseline's: two like components in a row."""
    with gr.Row():
        return component(label=ours, **options), component(label=baseline, **options)


def model_and_budget(shipped: ShippedModels, results: Path, choices, label: str, elem_id: str):
    """A model selector and its budget radio on the left, the label-efficiency chart on the
    right."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            source = gr.Dropdown(choices, value=_first(choices), label=label)
            budget = budget_selector.radio(shipped, [key for _, key in choices], elem_id)
        with gr.Column(scale=2, min_width=320):
            chart, note = budget_selector.chart(shipped, results, _first(choices), budget.value)
    return source, budget, chart, note


def build(shipped: ShippedModels, session: gr.State, queries: RateLimiter,
          results: Path) -> RetrievalTab:
    image_choices, speech_choices = shipped.choices("image"), shipped.choices("speech")
    ours, twin = featured(), featured_twin()
    ours_label = label(ours)
    gr.Markdown(f"Query an alignment: {ours_label} on the left, the baseline you pick on the right. The "
                "shipped checkpoints work at once, at several paired budgets N: switch N and the "
                "same query is answered again, so you can see what more pairs buy. After a "
                "training run, your own model joins the list. Scores are cosine similarities in "
                "each method's aligned space, over the same gallery of held-out items at every "
                "budget.")
    with gr.Row():
        baseline = gr.Dropdown([m for m in METHODS if m != ours], value=twin,
                               label=f"Compare {ours_label} with")
        k = gr.Slider(1, 20, value=8, step=1, label="k (results)")
    with gr.Tabs():
        with gr.Tab("Text → images"):
            image_source, image_budget, image_chart, image_note = model_and_budget(
                shipped, results, image_choices, "Model (image ↔ text)", "image-budget")
            with gr.Row():
                text = gr.Textbox(label="Describe an image", scale=4,
                                  placeholder=TEXT_EXAMPLES[0])
                text_button = gr.Button("Search images", variant="primary", scale=1)
            gr.Examples([[t] for t in TEXT_EXAMPLES], [text])
            gallery_ours, gallery_base = side_by_side(
                gr.Gallery, ours_label, twin, columns=4, height="auto", object_fit="contain")
        with gr.Tab("Image → captions"):
            gr.Markdown("Uses the model and budget chosen under “Text → images”.")
            with gr.Row():
                image_file = gr.File(label="An image (PNG, JPEG, WebP, GIF)", file_types=["image"])
                preview = gr.Image(label="Query", interactive=False, height=200)
                image_button = gr.Button("Find captions", variant="primary")
            captions_ours, captions_base = side_by_side(
                gr.Dataframe, ours_label, twin, headers=RESULT_HEADERS, wrap=True)
        with gr.Tab("Speech → transcripts"):
            speech_source, speech_budget, speech_chart, speech_note = model_and_budget(
                shipped, results, speech_choices, "Model (speech ↔ text)", "speech-budget")
            with gr.Row():
                audio = gr.Audio(sources=["microphone", "upload"], type="filepath",
                                 label="Say a word or a short phrase (at most 30 s)",
                                 elem_id="speech-query")
                speech_button = gr.Button("Find transcripts", variant="primary")
            speech_ours, speech_base = side_by_side(
                gr.Dataframe, ours_label, twin, headers=RESULT_HEADERS, wrap=True)

    # Parameter names are the API's (gradio_client users pass them by name).
    @errors_as_ui
    def search_images(session_value, model, budget, baseline, text, k, request: gr.Request):
        models = checked(request, session_value, model, budget)
        return retrieval.text_to_images(models, (ours, baseline), text, int(k))

    @errors_as_ui
    def find_captions(session_value, model, budget, baseline, image, k, request: gr.Request):
        models = checked(request, session_value, model, budget)
        picture = retrieval.load_query_image(image)
        return [picture] + retrieval.image_to_texts(models, (ours, baseline), picture, int(k))

    @errors_as_ui
    def find_transcripts(session_value, model, budget, baseline, audio, k, request: gr.Request):
        models = checked(request, session_value, model, budget)
        clip = retrieval.load_query_audio(audio)
        return retrieval.speech_to_texts(models, (ours, baseline), clip, int(k))

    def checked(request, session_value, model, budget):
        """The visitor's query allowance, then the model set they name at the budget they name:
        both checked before an upload is decoded (the cheap refusals first)."""
        queries.check(visitor_of(request))
        return resolve(shipped, session_value, model, budget)

    @errors_as_ui
    def again_images(session_value, model, budget, baseline, text, image, k, request: gr.Request):
        """The budget changed: the chart moves, and whatever was asked is answered again."""
        out = [budget_selector.chart_and_note(shipped, results, model, budget)[0]]
        out += (search_images(session_value, model, budget, baseline, text, k, request)
                if (text or "").strip() else [gr.skip()] * 2)
        out += (find_captions(session_value, model, budget, baseline, image, k, request)[1:]
                if image else [gr.skip()] * 2)
        return out

    @errors_as_ui
    def again_transcripts(session_value, model, budget, baseline, audio, k, request: gr.Request):
        out = [budget_selector.chart_and_note(shipped, results, model, budget)[0]]
        return out + (find_transcripts(session_value, model, budget, baseline, audio, k, request)
                      if audio else [gr.skip()] * 2)

    baseline_outputs = [gallery_base, captions_base, speech_base]
    baseline.change(lambda other: [gr.update(label=other)] * len(baseline_outputs), baseline,
                    baseline_outputs, show_progress="hidden", api_visibility="private")
    search_inputs = [session, image_source, image_budget, baseline, text, k]
    text_button.click(search_images, search_inputs, [gallery_ours, gallery_base],
                      api_name="text_to_images")
    text.submit(search_images, search_inputs, [gallery_ours, gallery_base],
                api_visibility="private")
    image_button.click(find_captions, [session, image_source, image_budget, baseline, image_file, k],
                       [preview, captions_ours, captions_base], api_name="image_to_captions")
    speech_button.click(find_transcripts, [session, speech_source, speech_budget, baseline, audio, k],
                        [speech_ours, speech_base], api_name="speech_to_transcripts")
    # A new model: its budgets and chart. A budget chosen (.input: by the visitor, not by the
    # update above): the same query again at that budget.
    for source, budget, chart, note in ((image_source, image_budget, image_chart, image_note),
                                        (speech_source, speech_budget, speech_chart, speech_note)):
        source.change(lambda session_value, key: budget_selector.for_model(
                          shipped, results, session_value, key),
                      [session, source], [budget, chart, note], show_progress="hidden",
                      api_visibility="private")
    image_budget.input(again_images, [session, image_source, image_budget, baseline, text,
                                      image_file, k],
                       [image_chart, gallery_ours, gallery_base, captions_ours, captions_base],
                       api_visibility="private")
    speech_budget.input(again_transcripts, [session, speech_source, speech_budget, baseline,
                                            audio, k],
                        [speech_chart, speech_ours, speech_base], api_visibility="private")
    return RetrievalTab(image_source, speech_source)
