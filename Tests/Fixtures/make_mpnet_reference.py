"""MPNet fixtures for Tests/TextEncoderTests/MPNetParityTests.swift, made by PyTorch + transformers' MPNetModel.

  tiny_mpnet/            a random MPNet (3 layers, hidden 32, 4 heads, 32 relative buckets) with a vocabulary of the
                         word pieces that all-mpnet-base-v2's tokenizer makes of the texts below (plus every letter
                         and digit, alone and as ##x): config.json, vocab.txt, tokenizer_config.json, model.safetensors.
                         Its relative attention bias is drawn with std 2 (not 0.02), so that a wrong bucket, offset or
                         sign moves the vectors far past the test's tolerance.
  tiny_mpnet_reference.json
                         for each text of minilm_l6_reference.json (64 criterion sentences and hard cases, one of 300
                         words: relative positions up to 255, past MPNet's max_distance 128): input_ids and the hidden
                         states after layers 1, 2, 3 mean-pooled over the attention mask (coarse, medium, fine), at most
                         256 tokens; and `buckets`: transformers' relative_position_bucket of every offset -300 ... 300.
  mpnet_base_reference.json
                         the same for all-mpnet-base-v2 itself (layers 4, 8, 12) on the first 16 texts and the 300-word
                         one, when its folder is given (the test runs where Launch/setup --encoder all-mpnet-base-v2 installed it).

Usage: python make_mpnet_reference.py [MODELS/all-mpnet-base-v2]   (from this folder; torch, transformers, safetensors)
"""
import json, os, sys
import torch
from safetensors.torch import save_file
from transformers import MPNetConfig, MPNetModel, MPNetTokenizer

here = os.path.dirname(os.path.abspath(__file__))
base_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "models", "all-mpnet-base-v2")
texts = [item["text"] for item in json.load(open(os.path.join(here, "minilm_l6_reference.json")))["items"]]
MAX = 256


def pooled(model, tokenizer, text, layers):
    enc = tokenizer(text, return_tensors="pt", truncation=True, max_length=MAX)
    with torch.no_grad():
        states = model(**enc, output_hidden_states=True).hidden_states
    item = {"text": text, "input_ids": enc["input_ids"][0].tolist()}
    for name, layer in zip(("coarse", "medium", "fine"), layers):
        item[name] = states[layer][0].mean(0).tolist()
    return item


def write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f)
        f.write("\n")
    os.replace(path + ".tmp", path)


base_tokenizer = MPNetTokenizer.from_pretrained(base_dir)
pieces = set()
for t in texts:
    pieces.update(base_tokenizer.convert_ids_to_tokens(base_tokenizer(t, truncation=True, max_length=MAX)["input_ids"]))
chars = [c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
specials = ["<s>", "<pad>", "</s>", "<unk>", "[UNK]", "<mask>"]
vocab = specials + sorted((pieces | set(chars) | {"##" + c for c in chars}) - set(specials))
tiny = os.path.join(here, "tiny_mpnet")
os.makedirs(tiny, exist_ok=True)
with open(os.path.join(tiny, "vocab.txt"), "w") as f:
    f.write("\n".join(vocab) + "\n")
json.dump({"do_lower_case": True, "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
           "unk_token": "[UNK]", "pad_token": "<pad>", "mask_token": "<mask>", "tokenizer_class": "MPNetTokenizer"},
          open(os.path.join(tiny, "tokenizer_config.json"), "w"), indent=1)
config = MPNetConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=MAX + 2, relative_attention_num_buckets=32,
                     layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2, hidden_act="gelu")
torch.manual_seed(0)
model = MPNetModel(config, add_pooling_layer=False).eval()
with torch.no_grad():
    model.encoder.relative_attention_bias.weight.normal_(0, 2.0)
    for name, p in model.named_parameters():   # LayerNorms away from 1 / 0, so that each one's weights matter
        if "LayerNorm" in name:
            p.add_(torch.randn_like(p) * 0.2)
config.to_json_file(os.path.join(tiny, "config.json"))
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(tiny, "model.safetensors"),
          metadata={"format": "pt", "made_by": "Tests/Fixtures/make_mpnet_reference.py", "torch": torch.__version__})
tokenizer = MPNetTokenizer(os.path.join(tiny, "vocab.txt"), do_lower_case=True)
buckets = model.encoder.relative_position_bucket(torch.arange(-300, 301), num_buckets=32).tolist()
write_json(os.path.join(here, "tiny_mpnet_reference.json"),
           {"model": "tiny_mpnet", "max_length": MAX, "levels": "mean-pooled hidden states after layers 1,2,3",
            "torch": torch.__version__, "buckets_from": -300, "buckets": buckets,
            "items": [pooled(model, tokenizer, t, (1, 2, 3)) for t in texts]})

base = MPNetModel.from_pretrained(base_dir, add_pooling_layer=False).eval()
chosen = texts[:16] + [max(texts, key=len)]
items = []
for t in chosen:
    item = pooled(base, base_tokenizer, t, (4, 8, 12))
    for name in ("coarse", "medium", "fine"):
        item[name] = [round(x, 6) for x in item[name]]
    items.append(item)
write_json(os.path.join(here, "mpnet_base_reference.json"),
           {"model": "all-mpnet-base-v2", "max_length": MAX, "levels": "mean-pooled hidden states after layers 4,8,12",
            "torch": torch.__version__, "items": items})
print(len(vocab), "tokens in the tiny vocabulary;", len(texts), "texts")
