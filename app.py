"""GeRA Studio — the Hugging Face Space's entry point, and what `make run` starts.

Builds the Gradio app from gera/ui and serves it on GRADIO_SERVER_NAME (default: 127.0.0.1 here,
0.0.0.0 on a Space) and GRADIO_SERVER_PORT (default 7860).
"""
from gera.ui import build_app, launch_kwargs, server_name

demo = build_app()

if __name__ == "__main__":
    demo.launch(server_name=server_name(), **launch_kwargs())
