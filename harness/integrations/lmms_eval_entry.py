"""The `lmms_eval.models` entry point (pyproject.toml): lmms-eval 0.7.3's ModelRegistryV2 loads it and calls it for
the manifest that names the model `harness` (harness.integrations.lmms_eval_model.HarnessLMM, a simple model).
Loaded only by lmms-eval, so lmms_eval is importable here."""


def manifest():
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id="harness", simple_class_path="harness.integrations.lmms_eval_model.HarnessLMM")
