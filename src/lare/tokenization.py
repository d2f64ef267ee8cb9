"""An offline tokenizer for the tiny preset: byte-level BPE trained in-process with `tokenizers`.

Nothing is downloaded. The corpus is a fixed description vocabulary (shapes, colours, positions, question
words) plus whatever text the caller adds, so every string still encodes (byte fallback) but the words the
synthetic benchmark uses become single tokens.
"""

from __future__ import annotations

import functools

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

IMAGE_TOKEN = "<image>"
BEGIN_OF_THOUGHT_TOKEN = "<bot>"
END_OF_THOUGHT_TOKEN = "<eot>"
PAD_TOKEN = "<|pad|>"
TURN_START_TOKEN = "<|im_start|>"
TURN_END_TOKEN = "<|im_end|>"

# ChatML-style template; the turn end doubles as end-of-sequence, as in Qwen2.5-Instruct.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_BASE_CORPUS = """
user assistant system image describe the picture question answer options option choose letter
A B C D a b c d yes no Yes No true false The answer is . , ? ! : ; ( ) ' " - 0 1 2 3 4 5 6 7 8 9
what which where how many is are there a an of in on at to and or not it its this that these those
object objects shape shapes colour color size small large big tiny left right top bottom middle centre
center above below next beside near far corner upper lower first second then so look find read count
circle square triangle cross diamond star ring bar red green blue yellow purple orange black white gray
grey brown pink cyan image shows contains there is a in the top left of it is the object right of
step think step by step hint context rule according given both same different differ detail pair
Describe the image. Answer with the option's letter from the given choices directly.
Answer the question using a single word or phrase. Let's think step by step.
"""


# Upper bound of the tiny tokenizer's vocabulary; `LaReConfig.tiny()` sizes its embeddings to it, so a tokenizer
# trained on a larger corpus (more merges) still fits the same model.
TINY_VOCAB_SIZE = 1024


def build_tiny_tokenizer(extra_corpus: str = "", vocab_size: int = TINY_VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer offline and wrap it as a `PreTrainedTokenizerFast`.

    The result is deterministic for a given corpus and vocabulary size. It carries the special tokens
    `<image>`, `<bot>`, `<eot>`, a pad token, ChatML turn markers and a chat template.
    """
    special_tokens = [PAD_TOKEN, TURN_START_TOKEN, TURN_END_TOKEN, IMAGE_TOKEN, BEGIN_OF_THOUGHT_TOKEN,
                      END_OF_THOUGHT_TOKEN]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [line for line in (_BASE_CORPUS + "\n" + extra_corpus).splitlines() if line.strip()]
    # Repeat the corpus so that frequent merges win over rare ones deterministically.
    backend.train_from_iterator(lines * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=TURN_END_TOKEN,
        bos_token=None,
        unk_token=None,
        padding_side="left",
        chat_template=TINY_CHAT_TEMPLATE,
    )
    tokenizer.add_special_tokens({"extra_special_tokens": [IMAGE_TOKEN, BEGIN_OF_THOUGHT_TOKEN,
                                                                 END_OF_THOUGHT_TOKEN, TURN_START_TOKEN]})
    return tokenizer


@functools.lru_cache(maxsize=1)
def tiny_tokenizer_layout() -> tuple[int, dict[str, int]]:
    """Embedding rows and special-token ids of the tiny tokenizer (for `LaReConfig.tiny()`).

    The special tokens come first in training, so their ids do not depend on the corpus.
    """
    tokenizer = build_tiny_tokenizer()
    ids = {
        "pad": tokenizer.pad_token_id,
        "eos": tokenizer.eos_token_id,
        "image": tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        "bot": tokenizer.convert_tokens_to_ids(BEGIN_OF_THOUGHT_TOKEN),
        "eot": tokenizer.convert_tokens_to_ids(END_OF_THOUGHT_TOKEN),
    }
    return TINY_VOCAB_SIZE, ids
