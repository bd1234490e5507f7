"""Packing on torch's own variable-length attention (engine.modeling.varlen): the sequence boundaries it
derives from position ids and padding masks match a plain reference, and a model running the whole
bookkeeping (gather, cu_seqlens, scatter back) gives the loss, the gradients and the generations of plain
SDPA. On CPU the kernel itself is reference_kernel (causal SDPA one sequence at a time): torch's
varlen_attn is a CUDA flash kernel; bench/gpu_acceptance.py compares it with padded SDPA on the GPU."""
import inspect

import pytest
import torch

from engine.modeling import varlen
from engine.train import collate as batching
from engine.train.loss import trained_positions_loss


def reference_bounds(position_ids, mask):
    """cu_seqlens by hand: walk every row; a kept token starts a sequence at a row start or where its
    position is not the previous kept one's + 1."""
    cu, n, longest = [0], 0, 0
    for b in range(position_ids.shape[0]):
        prev, run = None, 0
        for t in range(position_ids.shape[1]):
            if mask is not None and not mask[b, t]:
                continue
            p = int(position_ids[b, t])
            if prev is not None and p != prev + 1:
                cu.append(n)
                longest, run = max(longest, run), 0
            n, run, prev = n + 1, run + 1, p
        if run:
            cu.append(n)
            longest = max(longest, run)
    return cu, longest


def random_layout(g, batch, length):
    """Rows of packed examples (positions restarting at 0), right or left padding, or none."""
    pos = torch.zeros(batch, length, dtype=torch.long)
    mask = torch.ones(batch, length, dtype=torch.long)
    for b in range(batch):
        used = length - int(torch.randint(0, length // 2, (1,), generator=g))
        t = 0
        while t < used:
            n = min(used - t, int(torch.randint(1, 12, (1,), generator=g)))
            pos[b, t:t + n] = torch.arange(n)
            t += n
        mask[b, used:] = 0
        if b % 3 == 2:  # left padding, as generate() lays out a batch
            pos[b], mask[b] = pos[b].roll(length - used), mask[b].roll(length - used)
    return pos, mask


@pytest.mark.parametrize("seed", range(6))
def test_cu_seqlens_from_position_ids_match_a_reference(seed):
    g = torch.Generator().manual_seed(seed)
    batch, length = 1 + seed % 3, 20 + 7 * seed
    pos, mask = random_layout(g, batch, length)
    for m in (mask, None):
        b = varlen.bounds(pos, m, batch, length)
        cu, longest = reference_bounds(pos, m)
        assert b.cu_seqlens.tolist() == cu and b.max_len == longest
        assert b.cu_seqlens.dtype == torch.int32
        if m is not None and not bool(m.all()):
            assert b.keep.tolist() == m.reshape(-1).nonzero().squeeze(1).tolist()


def test_rows_without_position_ids_are_one_sequence_each():
    b = varlen.bounds(None, None, 3, 5, device="cpu")
    assert b.cu_seqlens.tolist() == [0, 5, 10, 15] and b.max_len == 5 and b.keep is None


def rows(n, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(5, 40, (1,), generator=g))
        ids = torch.randint(10, 1000, (length,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [-100] * (length // 3) + ids[length // 3:]})
    return out


@pytest.fixture
def models(tiny_model_dir):
    """(plain SDPA model, the same weights on the varlen bookkeeping with the reference kernel)."""
    from transformers import AutoModelForCausalLM
    sdpa = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    name = varlen.register(kernel=varlen.reference_kernel)
    packed = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=name)
    yield sdpa, packed
    varlen.register()  # no forced kernel for whoever comes next


def test_packed_rows_on_the_varlen_path_give_padded_sdpa_loss_and_gradients(models):
    sdpa, packed = models
    batch = rows(5, seed=3)
    b = batching.padded(0, trained_logits_only=True)(batch)
    labels = b.pop("labels")
    ref = trained_positions_loss(sdpa(**b), labels)
    ref.backward()
    p = batching.packed(trained_logits_only=True)(batch)
    labels = p.pop("labels")
    got = trained_positions_loss(packed(**p), labels)
    got.backward()
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-6), (got, ref)
    for (name, a), (_, c) in zip(sdpa.named_parameters(), packed.named_parameters()):
        assert torch.allclose(a.grad, c.grad, rtol=1e-4, atol=1e-6), name


def test_padded_batches_and_generation_on_the_varlen_path_match_sdpa(models):
    sdpa, packed = models
    batch = rows(3, seed=4)
    with torch.no_grad():
        b = batching.padded(0)(batch)
        keep = b["attention_mask"].bool()
        assert torch.allclose(sdpa(**b).logits[keep], packed(**b).logits[keep], atol=1e-5)
        # a left-padded batch, generated greedily (prefill on the varlen path, decoding through SDPA)
        ids = torch.tensor([[0, 0, 0] + batch[0]["input_ids"][:5], batch[1]["input_ids"][:8]])
        mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1], [1] * 8])
        kw = dict(attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
        assert torch.equal(sdpa.generate(ids, **kw), packed.generate(ids, **kw))


def test_without_a_kernel_packed_rows_still_never_see_each_other(tiny_model_dir):
    """No kernel for these tensors (CPU, fp32): SDPA with the block-diagonal mask the boundaries imply."""
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32,
                                                 attn_implementation=varlen.register()).eval()
    batch = rows(3, seed=5)
    with torch.no_grad():
        out = model(**{k: v for k, v in batching.packed()(batch).items() if k != "labels"}).logits[0]
        start = 0
        for r in batch:
            n = len(r["input_ids"])
            alone = model(input_ids=torch.tensor([r["input_ids"]])).logits[0]
            assert torch.allclose(out[start:start + n], alone, atol=1e-4), "an example saw its neighbour"
            start += n


def _fake_varlen(signature: str):
    """Stand-ins with the signatures torch's varlen_attn has had (2.10: is_causal; 2.11: window_size;
    2.12+: enable_gqa too), computing with reference_kernel and refusing what that torch refused."""
    def run(q, k, v, cu_q, cu_k, max_q, max_k, causal, scale=None):
        assert causal, "the call must ask for causal attention"
        assert q.shape[1] == k.shape[1] or signature == "2.13", "this torch has no grouped-query flag"
        return varlen.reference_kernel(q, k, v, cu_q, max_q, scale)

    if signature == "2.10":
        def fn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, return_aux=None):
            return run(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal)
    elif signature == "2.11":
        def fn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
               window_size=(-1, -1)):
            return run(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, window_size == (-1, 0), scale)
    else:
        def fn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
               window_size=(-1, -1), enable_gqa=False):
            assert enable_gqa or query.shape[1] == key.shape[1]
            return run(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, window_size == (-1, 0), scale)
    return fn, frozenset(inspect.signature(fn).parameters)


@pytest.mark.parametrize("signature", ["2.10", "2.11", "2.13"])
def test_the_torch_kernel_call_fits_each_torch_release(monkeypatch, signature):
    monkeypatch.setattr(varlen, "_torch_varlen", lambda: _fake_varlen(signature))
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(30, 8, 16, generator=g), torch.randn(30, 2, 16, generator=g), torch.randn(30, 2, 16,
                                                                                                     generator=g)
    cu = torch.tensor([0, 7, 19, 30], dtype=torch.int32)
    want = varlen.reference_kernel(q, k, v, cu, 12, 0.3)
    assert torch.allclose(varlen.torch_kernel(q, k, v, cu, 12, 0.3), want, atol=1e-5)


def test_this_torch_ships_varlen_attention():
    """The default path on CUDA needs no extra wheel: torch itself has the kernel (2.10 on)."""
    fn, params = varlen._torch_varlen()
    assert fn is not None and {"query", "key", "value", "cu_seq_q", "max_q"} <= params
