"""Imported by `harness.video.reader.check_backend("nvdec")`: fails (one line) unless PyNvVideoCodec imports and
torch sees a CUDA GPU, so `--decode-backend nvdec` is refused up front (exit 2) where it cannot run."""
from harness.video.nvdec import check_available

check_available()
