"""harness.video.reader."""
