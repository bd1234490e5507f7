"""Packing and trained-positions-only logits give the loss of a plain padded batch, and packed
examples never see each other."""
import torch
from transformers import AutoModelForCausalLM

from engine.train import collate as batching
from engine.train.loss import trained_positions_loss


def rows(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = int(torch.randint(5, 40, (1,), generator=g))
        ids = torch.randint(10, 1000, (length,), generator=g).tolist()
        cut = length // 3
        out.append({"input_ids": ids, "labels": [-100] * cut + ids[cut:]})
    return out


def padded_loss(model, batch):
    b = batching.padded(0)(batch)
    return model(**b).loss, b


def test_packed_loss_equals_padded_loss(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    batch = rows()
    with torch.no_grad():
        ref, _ = padded_loss(model, batch)
        packed = batching.packed()(batch)
        got = model(**packed).loss
        sparse = batching.packed(trained_logits_only=True)(batch)
        # A position index, the one form every transformers 5.x takes (a boolean mask only from ~5.2x on).
        assert sparse["logits_to_keep"].dim() == 1 and sparse["logits_to_keep"].dtype == torch.long
        labels = sparse.pop("labels")
        got_sparse = trained_positions_loss(model(**sparse), labels)
        pb = batching.padded(0, trained_logits_only=True)(batch)
        pl = pb.pop("labels")
        got_padded_sparse = trained_positions_loss(model(**pb), pl)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5), (got, ref)
    assert torch.allclose(got_sparse, ref, rtol=1e-5, atol=1e-5), (got_sparse, ref)
    assert torch.allclose(got_padded_sparse, ref, rtol=1e-5, atol=1e-5), (got_padded_sparse, ref)
    assert packed["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in batch))


def test_packed_logits_of_each_example_equal_its_own_unpacked_logits(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    batch = rows(3, seed=1)
    with torch.no_grad():
        packed_logits = model(**{k: v for k, v in batching.packed()(batch).items() if k != "labels"}).logits[0]
        start = 0
        for r in batch:
            n = len(r["input_ids"])
            alone = model(input_ids=torch.tensor([r["input_ids"]])).logits[0]
            assert torch.allclose(packed_logits[start:start + n], alone, atol=1e-4), "an example saw its neighbour"
            start += n


def test_gradients_match_between_packed_and_padded(tiny_model_dir):
    batch = rows(4, seed=2)
    grads = []
    for collate in (batching.padded(0), batching.packed(trained_logits_only=True)):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        b = collate(batch)
        if "logits_to_keep" in b:
            labels = b.pop("labels")
            loss = trained_positions_loss(model(**b), labels)
        else:
            loss = model(**b).loss
        loss.backward()
        grads.append(model.model.layers[0].self_attn.q_proj.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_auto_packs_only_where_a_variable_length_kernel_exists():
    # Packing into one masked SDPA row is slower than padding (0.82x measured on CPU); 'auto' must not do it there.
    assert batching.use_packing("on") and not batching.use_packing("off")
    assert batching.use_packing("auto") == batching.varlen_attention()
