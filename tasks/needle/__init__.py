"""`needle`: synthetic needle-in-a-haystack multiple-choice QA over real H.264 videos (registered as `needle`).

Each video (2 to 10 minutes, 128x128 px, 4 fps) is a haystack of smooth, low-contrast, low-saturation textures that
drift slowly and change every 20-60 s (scene cuts), with grey or faintly tinted distractor shapes moving over them.
One to three needle events of 2-6 s each show a saturated target object: one of SHAPES in one of COLOURS, 24-36 px.
Events never overlap, are at least 20 s apart and avoid the first and last 5 s.

Question types (balanced over the split):
* ``appearance``: "What colour is the triangle that appears in the video?", "What shape is the red object that
  appears in the video?" or "Which of these objects appears in the video?" (about an object that is unique: the
  needle objects of one video all differ in shape and in colour);
* ``order``: "Which of these objects appears first in the video?" (two real needle objects and two absent ones);
* ``count``: "How many times does the red triangle appear in the video?" (options 1..4).

Everything is a pure function of (split, seed, video index): `make_specs` builds the `VideoSpec`s (scenes,
distractors, events and questions), `render_frame(spec, t)` draws any frame without decoding, `frame_objects(spec,
t)` lists the needle events visible at t, and `make_samples` turns a spec into `Sample`s. `NeedleTask` writes the
videos once (atomically, in parallel, skipping existing files) under ``data_home()/needle/`` and reuses them;
each write first removes the temp files that interrupted writes left there (`render.remove_leftovers`).
Splits ``train`` and ``test`` draw from disjoint random streams.

Modules: `spec` (vocabulary, constants, records), `questions` (question kinds and their balance), `generate`
(specs and samples), `render` (frames and video files), `task` (`NeedleTask`). This package is the public API:
import from `tasks.needle`, not from its modules.
"""
from tasks.needle.generate import make_samples, make_specs
from tasks.needle.questions import LAYOUTS, layout_questions, make_question
from tasks.needle.render import (frame_objects, iter_frames, render_frame, saturation, shape_mask, write_spec_video,
                                 write_videos)
from tasks.needle.spec import (COLOURS, EDGE, EVENT_GAP, EVENT_SECONDS, FPS, LETTERS, QUESTION_TYPES, SHAPES, SIZE,
                               SPLITS, VERSION, Distractor, Event, Question, Scene, VideoSpec)
from tasks.needle.task import NeedleTask  # importing it registers the task

__all__ = ["COLOURS", "EDGE", "EVENT_GAP", "EVENT_SECONDS", "FPS", "LAYOUTS", "LETTERS", "QUESTION_TYPES", "SHAPES",
           "SIZE", "SPLITS", "VERSION", "Distractor", "Event", "NeedleTask", "Question", "Scene", "VideoSpec",
           "frame_objects", "iter_frames", "layout_questions", "make_question", "make_samples", "make_specs",
           "render_frame", "saturation", "shape_mask", "write_spec_video", "write_videos"]
