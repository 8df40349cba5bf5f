"""torch.compile of the MMDiT blocks (`MoDA.compile_blocks`, `model.compile`): the compiled model trains and
samples like the eager one, keeps its state-dict names, and another batch or window length does not recompile.

Inductor compiles the three block graphs in about a minute on two cores, so one test covers training and
sampling; it uses the tiny preset's widths, whose compiled code the compiled training run (tests/lit) reuses."""

import copy

import pytest
import torch

from moda_train.flow.sampler import sample
from tests.tiny_moda import tiny_inputs, tiny_model

pytestmark = pytest.mark.slow


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_compiled_blocks_match_eager_in_training_and_sampling_without_recompiling():
    eager = tiny_model(hidden_size=64, audio_dim=320)  # configs/model/tiny.yaml widths
    compiled = copy.deepcopy(eager)
    compiled.compile_blocks()
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # checkpoints load either way

    # The second shape must reuse the first one's code: batch and length are dynamic. The first batch equals the
    # RoPE table's width (head_dim / 2 = 8): duck sizing would give both one symbol and specialise the batch.
    for i, (batch, frames) in enumerate([(8, 7), (2, 11)]):
        with torch.compiler.set_stance("fail_on_recompile" if i else "default"):
            inputs = tiny_inputs(eager, batch, frames, seed=i)
            out_eager, out_compiled = eager(**inputs), compiled(**inputs)
            torch.testing.assert_close(out_compiled, out_eager, rtol=1e-4, atol=1e-5)
            for model, out in ((eager, out_eager), (compiled, out_compiled)):
                model.zero_grad()
                out.square().mean().backward()
            grads_eager, grads_compiled = _grads(eager), _grads(compiled)
            for name, grad in grads_eager.items():
                torch.testing.assert_close(grads_compiled[name], grad, rtol=1e-3, atol=1e-5, msg=name)

    eager.eval(), compiled.eval()
    inputs = tiny_inputs(eager, 2, 9)
    cond = {key: inputs[key] for key in ("audio", "identity", "emotion", "prev_motion")}
    noise = torch.randn_like(inputs["x_t"])
    for i, scales in enumerate([(1.15, 1.15), (1.2, 1.5)]):  # two and three passes: batch 4, then 6
        with torch.compiler.set_stance("fail_on_recompile" if i else "default"):
            got, want = (sample(m, cond, 9, steps=3, guidance_audio=scales[0], guidance_emotion=scales[1],
                                noise=noise) for m in (compiled, eager))  # fmt: skip
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
