"""The Retrieval playground: text → images, image → captions, speech → transcripts, with GeRA
and a baseline side by side."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from gera.errors import GeraError
from gera.methods import METHODS
from gera.ui import retrieval
from gera.ui.models import ShippedModels
from gera.ui.sources import resolve

BASELINES = [m for m in METHODS if m != "gera"]
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


def _errors_as_ui(fn):
    """Run a query; a user-facing problem becomes a visible error, the app keeps serving."""
    def run(*args):
        try:
            return fn(*args)
        except GeraError as err:
            raise gr.Error(str(err)) from None
    return run


def build(shipped: ShippedModels, session: gr.State) -> RetrievalTab:
    image_choices, speech_choices = shipped.choices("image"), shipped.choices("speech")
    gr.Markdown("Query an alignment: GeRA on the left, the baseline you pick on the right. The "
                "shipped checkpoints work at once; after a training run, your own model joins the "
                "list. Scores are cosine similarities in each method's aligned space, over a "
                "gallery of held-out items.")
    with gr.Row():
        baseline = gr.Dropdown(BASELINES, value="contrastive", label="Compare GeRA with")
        k = gr.Slider(1, 20, value=8, step=1, label="k (results)")
    with gr.Tabs():
        with gr.Tab("Text → images"):
            image_source = gr.Dropdown(image_choices, value=_first(image_choices),
                                       label="Model (image ↔ text)")
            with gr.Row():
                text = gr.Textbox(label="Describe an image", scale=4,
                                  placeholder=TEXT_EXAMPLES[0])
                text_button = gr.Button("Search images", variant="primary", scale=1)
            gr.Examples([[t] for t in TEXT_EXAMPLES], [text])
            with gr.Row():
                gallery_gera = gr.Gallery(label="GeRA", columns=4, height="auto",
                                          object_fit="contain")
                gallery_base = gr.Gallery(label="contrastive", columns=4, height="auto",
                                          object_fit="contain")
        with gr.Tab("Image → captions"):
            gr.Markdown("Uses the model chosen under “Text → images”.")
            with gr.Row():
                image_file = gr.File(label="An image (PNG, JPEG, WebP, GIF)", file_types=["image"])
                preview = gr.Image(label="Query", interactive=False, height=200)
                image_button = gr.Button("Find captions", variant="primary")
            with gr.Row():
                captions_gera = gr.Dataframe(headers=RESULT_HEADERS, label="GeRA", wrap=True)
                captions_base = gr.Dataframe(headers=RESULT_HEADERS, label="contrastive",
                                             wrap=True)
        with gr.Tab("Speech → transcripts"):
            speech_source = gr.Dropdown(speech_choices, value=_first(speech_choices),
                                        label="Model (speech ↔ text)")
            with gr.Row():
                audio = gr.Audio(sources=["microphone", "upload"], type="filepath",
                                 label="Say a word or a short phrase (at most 30 s)",
                                 elem_id="speech-query")
                speech_button = gr.Button("Find transcripts", variant="primary")
            with gr.Row():
                speech_gera = gr.Dataframe(headers=RESULT_HEADERS, label="GeRA", wrap=True)
                speech_base = gr.Dataframe(headers=RESULT_HEADERS, label="contrastive", wrap=True)

    @_errors_as_ui
    def search_images(session_value, key, other, query, count):
        models = resolve(shipped, session_value, key)
        return [retrieval.text_to_images(models, method, query, int(count))
                for method in ("gera", other)]

    @_errors_as_ui
    def find_captions(session_value, key, other, path, count):
        if path is None:
            raise GeraError("Upload an image first.")
        image = retrieval.load_query_image(path)
        models = resolve(shipped, session_value, key)
        return [image] + [retrieval.image_to_texts(models, method, image, int(count))
                          for method in ("gera", other)]

    @_errors_as_ui
    def find_transcripts(session_value, key, other, path, count):
        clip = retrieval.load_query_audio(path)
        models = resolve(shipped, session_value, key)
        return [retrieval.speech_to_texts(models, method, clip, int(count))
                for method in ("gera", other)]

    baseline_outputs = [gallery_base, captions_base, speech_base]
    baseline.change(lambda other: [gr.update(label=other)] * len(baseline_outputs), baseline,
                    baseline_outputs, show_progress="hidden", api_visibility="private")
    search_inputs = [session, image_source, baseline, text, k]
    text_button.click(search_images, search_inputs, [gallery_gera, gallery_base],
                      api_name="text_to_images")
    text.submit(search_images, search_inputs, [gallery_gera, gallery_base],
                api_visibility="private")
    image_button.click(find_captions, [session, image_source, baseline, image_file, k],
                       [preview, captions_gera, captions_base], api_name="image_to_captions")
    speech_button.click(find_transcripts, [session, speech_source, baseline, audio, k],
                        [speech_gera, speech_base], api_name="speech_to_transcripts")
    return RetrievalTab(image_source, speech_source)
