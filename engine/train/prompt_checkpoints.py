"""Checkpoints of peft's reparameterised prompt methods (prefix with its MLP projection, P-tuning with
its MLP or LSTM encoder) that resume.

peft saves a prompt method as its final prompts (the encoder's output): all that inference needs, but
not what training needs. Resuming from it fails for a projected prefix (the saved prompts do not fit
the embedding in front of the MLP) and, for P-tuning, silently restarts from the encoded tokens fed
through the encoder a second time. So each checkpoint here also holds the whole encoder
(`prompt_encoder.safetensors`: embedding + MLP / LSTM), and resuming loads that. The final adapter
stays peft's own format. Heavy (torch, safetensors).
"""
from __future__ import annotations

from pathlib import Path

ENCODER_FILE = "prompt_encoder.safetensors"


def needed(cfg) -> bool:
    """Whether this run's prompt method has an encoder peft does not checkpoint."""
    m = cfg.method
    return m.finetuning == "ptuning" or (m.finetuning == "prefix" and m.prompt.prefix_projection)


def encoder_of(model):
    return model.prompt_encoder[model.active_adapter]


def save_encoder(model, folder: str | Path) -> None:
    from safetensors.torch import save_file
    state = {k: v.detach().cpu().contiguous() for k, v in encoder_of(model).state_dict().items()}
    save_file(state, str(Path(folder) / ENCODER_FILE))


def load_encoder(model, folder: str | Path) -> None:
    from safetensors.torch import load_file
    encoder_of(model).load_state_dict(load_file(str(Path(folder) / ENCODER_FILE)), strict=True)


def trainer_class(base_cls):
    """A subclass of a Trainer class whose checkpoints carry, and resume, the whole prompt encoder."""
    class PromptEncoderCheckpoints(base_cls):
        def _save(self, output_dir=None, state_dict=None):
            super()._save(output_dir, state_dict)
            save_encoder(self.model, output_dir or self.args.output_dir)

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            if not (Path(resume_from_checkpoint) / ENCODER_FILE).is_file():  # written before this file existed
                raise RuntimeError(f"{resume_from_checkpoint} holds only the encoded prompts, not the prompt "
                                   "encoder, so training cannot continue from it; delete the run's checkpoints/ "
                                   "folder to train it from the start")
            load_encoder(model or self.model, resume_from_checkpoint)

    return PromptEncoderCheckpoints
