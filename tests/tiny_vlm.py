"""A tiny random Llava image-text-to-text model, built offline and saved the way a real one ships.

CLIP vision tower (32x32 pixels, 8x8 patches: 16 patches + CLS = 17 image tokens), a one-layer
Llama, a byte-level BPE tokenizer trained here with `tokenizers` (with an <image> token), a
CLIP image processor and a chat template: everything `save_pretrained` writes, so the backend
loads it through AutoProcessor / AutoModelForImageTextToText exactly as it loads a user's model.
"""

from __future__ import annotations

from pathlib import Path

IMAGE_TOKENS = 17  # (32 / 8) ** 2 patches + the CLS token ("full" feature selection)
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ message['role'].upper() }}: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
_CORPUS = [
    "USER: describe this picture ASSISTANT: a red circle on a blue background",
    "USER: what is written here? ASSISTANT: the sign says open from nine to five",
    "SYSTEM: you are a helpful assistant that looks at images and answers in short sentences",
    "the quick brown fox jumps over the lazy dog 0123456789",
]


def tiny_vlm(folder: Path) -> Path:
    """Build the model under `folder` (once; later calls reuse it) and return the folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    folder = Path(folder)
    if (folder / "config.json").is_file() and (folder / "processor_config.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)

    # 1. Tokenizer: byte-level BPE trained on a few sentences, with the chat's special tokens.
    specials = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(_CORPUS * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}

    # 2. Model: tiny CLIP vision tower + one-layer Llama, random weights from a fixed seed.
    vision = CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        image_size=32, patch_size=8, projection_dim=16,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
        bos_token_id=ids["<s>"], eos_token_id=ids["</s>"], pad_token_id=ids["<pad>"],
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=ids["<image>"],
        vision_feature_layer=-1, vision_feature_select_strategy="full", image_seq_length=IMAGE_TOKENS,
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.bos_token_id = ids["<s>"]
    model.generation_config.eos_token_id = ids["</s>"]
    model.generation_config.pad_token_id = ids["<pad>"]

    # 3. Processor: CLIP preprocessing to 32x32, the tokenizer and the chat template.
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
        patch_size=8, vision_feature_select_strategy="full", num_additional_image_tokens=1,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
