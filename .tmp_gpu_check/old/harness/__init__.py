"""longvideo-harness: evaluation of frame selection for long-video question answering."""
__version__ = "0.1.0"
