"""An independent ColQwen reference built from the published processor and model facts, straight on
transformers (no umr code): for the parity tests of the multi-vector recipes.

Facts (colpali-engine ColQwen2Processor / ColQwen2_5_Processor, ColQwen2 / ColQwen2_5):
query text = "Query: " + q + "<|endoftext|>" * 10; page = "<|im_start|>user\\n<|vision_start|>" + image pads
+ "<|vision_end|>Describe the image.<|im_end|><|endoftext|>"; images resized once by the Qwen2-VL image
processor within 4*28*28 .. 768*28*28 pixels; the base model's last hidden state -> custom_text_proj ->
L2 norm per token -> times the attention mask. LoRA: W + (lora_alpha / r) * B @ A on every adapted linear.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PAGE = "<|im_start|>user\n<|vision_start|>{pads}<|vision_end|>Describe the image.<|im_end|><|endoftext|>"


class ColQwenReference:
    def __init__(self, checkout: Path) -> None:
        import transformers
        from safetensors.torch import load_file
        from transformers import AutoTokenizer
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        adapter = (checkout / "adapter_config.json").is_file()
        base = checkout / "base" if adapter else checkout
        config = json.loads((base / "config.json").read_text())
        cls = {"qwen2_vl": "Qwen2VLModel", "qwen2_5_vl": "Qwen2_5_VLModel"}[config["model_type"]]
        self.model = getattr(transformers, cls).from_pretrained(base, dtype=torch.float32).eval()
        weights = {}
        for f in base.glob("*.safetensors"):
            weights.update(load_file(str(f)))
        self.head_w = weights["custom_text_proj.weight"].clone()
        self.head_b = weights["custom_text_proj.bias"].clone()
        if adapter:
            cfg = json.loads((checkout / "adapter_config.json").read_text())
            scale = cfg["lora_alpha"] / cfg["r"]
            lora = load_file(str(checkout / "adapter_model.safetensors"))
            for key in [k for k in lora if k.endswith("lora_A.weight")]:
                stem = key[: -len(".lora_A.weight")]
                delta = scale * lora[stem + ".lora_B.weight"] @ lora[key]
                name = stem[len("base_model.model."):]
                if name == "custom_text_proj":
                    self.head_w += delta
                    continue
                assert name.startswith("model.layers."), name
                module = self.model.language_model.get_submodule(name[len("model."):])
                with torch.no_grad():
                    module.weight += delta
        self.tokenizer = AutoTokenizer.from_pretrained(checkout)
        self.image_processor = Qwen2VLImageProcessorPil.from_pretrained(
            checkout, min_pixels=4 * 28 * 28, max_pixels=768 * 28 * 28
        )
        self.pad_id = self.tokenizer.convert_tokens_to_ids("<|image_pad|>")

    def _run(self, text: str, image: Image.Image | None = None) -> np.ndarray:
        kwargs = {}
        if image is not None:
            out = self.image_processor(
                images=[image.convert("RGB")],
                size={"shortest_edge": 4 * 28 * 28, "longest_edge": 768 * 28 * 28},
                return_tensors="pt",
            )
            n = int(out["image_grid_thw"].prod()) // 4
            text = text.replace("{pads}", "<|image_pad|>" * n)
            kwargs = {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}
        ids = torch.tensor([self.tokenizer.encode(text, add_special_tokens=False)])
        mask = torch.ones_like(ids)
        with torch.no_grad():
            hidden = self.model(
                input_ids=ids, attention_mask=mask, mm_token_type_ids=(ids == self.pad_id).int(), **kwargs
            ).last_hidden_state
            proj = hidden @ self.head_w.T + self.head_b
            proj = proj / proj.norm(dim=-1, keepdim=True)
            proj = proj * mask.unsqueeze(-1)
        return proj[0].numpy()

    def query(self, text: str) -> np.ndarray:
        return self._run("Query: " + text + "<|endoftext|>" * 10)

    def page(self, image: Image.Image) -> np.ndarray:
        return self._run(PAGE, image)
