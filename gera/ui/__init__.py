"""GeRA Studio's Gradio app: layout and callbacks that call the ``gera`` library.

The library never imports this package (nor gradio). ``build_app()`` returns the queued Blocks;
``app.py`` at the repository root launches it (``launch_kwargs()`` carries theme, css and js,
which Gradio 6 takes at launch).
"""
from gera.ui.config import AppConfig, server_name
from gera.ui.form import TrainForm
from gera.ui.layout import build_app
from gera.ui.theme import launch_kwargs

__all__ = ["AppConfig", "TrainForm", "build_app", "launch_kwargs", "server_name"]
