"""clip_ms.CLIPTextEncoder: parity with open_clip/OpenAI, names, causal mask, EOT pooling, frozen-ness, graph mode."""
import os
import sys

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from clip_ms import TEXT_CONFIGS, CLIPTextEncoder, TextConfig, text_parameter_shapes, trim_token_ids
from clip_ms.convert import load_text_tower

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "clip_ms")
sys.path.insert(0, FIXTURES)
from random_text_weights import openai_text_state_dict  # noqa: E402

pytestmark = pytest.mark.both_stacks

SOT, EOT = 49406, 49407


def max_relative_error(actual, expected):
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module")
def tiny_fixture():
    with np.load(os.path.join(FIXTURES, "text_encoder_tiny.npz")) as data:
        arrays = {k: data[k] for k in data.files}
    table = np.zeros((49408, 32), np.float32)
    table[arrays.pop("token_rows_ids")] = arrays.pop("token_rows")
    ids, expected = arrays.pop("ids"), arrays.pop("expected")
    arrays["token_embedding.weight"] = table
    return arrays, ids, expected


@pytest.fixture
def tiny_encoder(tiny_fixture):
    encoder = CLIPTextEncoder("tiny")
    load_text_tower(encoder, tiny_fixture[0])
    return encoder


def make_ids(rows, length=77):
    """rows: list of token lists without SOT/EOT -> (N, length) int32 ids."""
    ids = np.zeros((len(rows), length), np.int32)
    for i, row in enumerate(rows):
        ids[i, : len(row) + 2] = [SOT] + list(row) + [EOT]
    return ids


def test_configs():
    assert TEXT_CONFIGS["ViT-B/32"] == TextConfig(49408, 77, 512, 8, 12, 512)
    assert TEXT_CONFIGS["ViT-B/16"] == TextConfig(49408, 77, 512, 8, 12, 512)
    assert TEXT_CONFIGS["ViT-L/14"] == TextConfig(49408, 77, 768, 12, 12, 768)
    assert TEXT_CONFIGS["tiny"] == TextConfig(49408, 77, 32, 2, 2, 64)
    with pytest.raises(ValueError, match="heads"):
        TextConfig(width=30, heads=4)
    with pytest.raises(ValueError, match="unknown text config 'ViT-H/14'"):
        CLIPTextEncoder("ViT-H/14")


def test_parameter_names_shapes_and_frozen():
    encoder = CLIPTextEncoder("tiny")
    params = {p.name: p for p in encoder.get_parameters()}
    expected = text_parameter_shapes(TEXT_CONFIGS["tiny"])
    assert set(params) == set(expected)
    for name, shape in expected.items():
        assert tuple(params[name].shape) == shape, name
        assert params[name].dtype == ms.float32
        assert not params[name].requires_grad, name
    assert encoder.trainable_params() == []
    assert "transformer.resblocks.1.mlp.c_proj.weight" in params


def test_parity_with_open_clip_tiny(tiny_encoder, tiny_fixture):
    _, ids, expected = tiny_fixture
    out = tiny_encoder(Tensor(ids))
    assert out.shape == (ids.shape[0], 64) and out.dtype == ms.float32
    assert max_relative_error(out.asnumpy(), expected) < 1e-5


def test_parity_in_graph_mode(graph_mode, tiny_encoder, tiny_fixture):
    """A Python call in a GRAPH_MODE session runs op by op and leaves the mode as it was; compiled inside a parent
    graph (as in a training step that encodes its labels) the tower gives the same features at the given length."""
    _, ids, expected = tiny_fixture
    assert max_relative_error(tiny_encoder(Tensor(ids)).asnumpy(), expected) < 1e-5
    assert ms.get_context("mode") == ms.GRAPH_MODE

    class Step(nn.Cell):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def construct(self, token_ids):
            return self.encoder(token_ids) * 1.0

    step = Step(tiny_encoder)
    assert max_relative_error(step(Tensor(ids)).asnumpy(), expected) < 1e-5
    short = [1, 2, 3]  # tokenised strings, trimmed to a few columns: a second compiled graph
    assert max_relative_error(step(Tensor(trim_token_ids(ids[short]))).asnumpy(), expected[short]) < 1e-5


def test_trimmed_encoding_matches_full(tiny_encoder, tiny_fixture):
    _, ids, expected = tiny_fixture
    short = ids[[1, 2, 3]]  # tokenised strings, all far shorter than 77
    trimmed = trim_token_ids(short)
    assert trimmed.shape[1] == short.argmax(1).max() + 1 < 77
    np.testing.assert_array_equal(trimmed, short[:, : trimmed.shape[1]])
    assert max_relative_error(tiny_encoder.encode_text(short).asnumpy(), expected[[1, 2, 3]]) < 1e-5


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_python_calls_run_each_row_only_up_to_its_end_token_op_by_op(mode, tiny_fixture):
    """A call from Python runs op by op in either mode (the spy's Python body runs at every call), the rows of each
    end-token position at that length, and returns them in the given order."""
    seen = []

    class Spy(CLIPTextEncoder):
        def construct(self, token_ids):
            seen.append(tuple(token_ids.shape))
            return super().construct(token_ids)

    encoder = Spy("tiny")
    load_text_tower(encoder, tiny_fixture[0])
    ids = make_ids([[5, 6, 7, 8], [320, 1125], [1125, 320, 1125, 320], [320]])  # end tokens at 5, 3, 5, 2
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    by_end = encoder(Tensor(ids)).asnumpy()
    by_end_again = encoder(Tensor(ids)).asnumpy()
    assert seen == [(1, 3), (1, 4), (2, 6)] * 2
    assert ms.get_context("mode") == (ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    np.testing.assert_array_equal(by_end_again, by_end)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    full = encoder.construct(Tensor(ids)).asnumpy()  # bypasses __call__: all 77 columns, one batch
    assert seen[-1] == (4, 77)
    np.testing.assert_allclose(by_end, full, rtol=1e-5, atol=1e-6)
    gaps = np.abs(by_end[:, None] - by_end[None]).max(-1)
    assert gaps[np.triu_indices(4, 1)].min() > 1e-2  # every row differs, so a wrong order would show
    encoder(Tensor(ids[[0, 2]]))  # one end position: one run, trimmed
    assert seen[-1] == (2, 6)
    all_long = tiny_fixture[1][-8:-7]  # a 77-token row: nothing to trim
    encoder(Tensor(all_long))
    assert seen[-1] == (1, 77)


def test_trim_and_encode_text_input_checks(tiny_encoder):
    with pytest.raises(ValueError, match="non-empty"):
        trim_token_ids(np.zeros((0, 77), np.int32))
    with pytest.raises(ValueError, match="context_length 77"):
        tiny_encoder.encode_text(np.zeros((2, 78), np.int32))
    assert trim_token_ids(make_ids([[5, 6]])).shape == (1, 4)


def test_causal_mask_later_tokens_never_change_earlier_positions():
    encoder = CLIPTextEncoder("tiny")
    rng = np.random.RandomState(0)
    x = rng.standard_normal((2, 12, 32)).astype(np.float32)
    mask = encoder.causal_mask[:12, :12]
    base = encoder.transformer(Tensor(x), mask).asnumpy()
    changed = x.copy()
    changed[:, 7:] = rng.standard_normal((2, 5, 32))
    after = encoder.transformer(Tensor(changed), mask).asnumpy()
    np.testing.assert_array_equal(after[:, :7], base[:, :7])
    assert np.abs(after[:, 7:] - base[:, 7:]).max() > 1e-3
    # Through the whole encoder: tokens after the end token do not matter, tokens before it do.
    ids = make_ids([[320, 1125, 539]])
    with_junk = ids.copy()
    with_junk[0, 6:20] = rng.randint(1, SOT, size=14)
    # construct() directly, so all 77 columns run (a Python call would trim the junk away before the mask sees it).
    full = encoder.construct(Tensor(ids)).asnumpy()
    np.testing.assert_array_equal(encoder.construct(Tensor(with_junk)).asnumpy(), full)
    earlier = ids.copy()
    earlier[0, 2] = 999
    assert np.abs(encoder.construct(Tensor(earlier)).asnumpy() - full).max() > 1e-4


def test_eot_pooling_takes_the_first_argmax_position(tiny_encoder):
    ids = make_ids([[320, 1125], [5, 6, 7, 8, 9]])
    ids[1, 3] = EOT  # a second end token earlier in the row: torch.argmax takes the first one
    x = tiny_encoder.token_embedding(Tensor(ids)) + tiny_encoder.positional_embedding
    hidden = tiny_encoder.ln_final(tiny_encoder.transformer(x, tiny_encoder.causal_mask)).asnumpy()
    projection = tiny_encoder.text_projection.asnumpy()
    manual = np.stack([hidden[0, 3], hidden[1, 3]]) @ projection
    np.testing.assert_allclose(tiny_encoder(Tensor(ids)).asnumpy(), manual, rtol=1e-5, atol=1e-6)


def test_batch_of_150_labels_equals_one_by_one(tiny_encoder):
    rng = np.random.RandomState(1)
    rows = [list(rng.randint(1, SOT, size=rng.randint(1, 8))) for _ in range(150)]
    ids = make_ids(rows)
    batch = tiny_encoder(Tensor(ids)).asnumpy()
    assert batch.shape == (150, 64)
    for i in (0, 77, 149):
        single = tiny_encoder(Tensor(ids[i:i + 1])).asnumpy()[0]
        np.testing.assert_allclose(batch[i], single, rtol=1e-5, atol=1e-6)
    assert np.abs(batch[0] - batch[1]).max() > 1e-4


def test_same_output_in_train_and_eval(tiny_encoder, tiny_fixture):
    ids = Tensor(tiny_fixture[1])
    tiny_encoder.set_train(True)
    train = tiny_encoder(ids).asnumpy()
    tiny_encoder.set_train(False)
    np.testing.assert_array_equal(tiny_encoder(ids).asnumpy(), train)


def test_no_gradient_reaches_the_encoder(tiny_encoder, tiny_fixture):
    ids = Tensor(tiny_fixture[1][:3])
    params = ms.ParameterTuple(tiny_encoder.get_parameters())
    for p in params:
        p.requires_grad = True  # even if someone unfreezes them, the output is stop_gradient'ed
    try:
        grads = ops.GradOperation(get_by_list=True)(lambda t: tiny_encoder(t).sum(), params)(ids)
        assert all(float(np.abs(g.asnumpy()).max()) == 0.0 for g in grads)
    finally:
        for p in params:
            p.requires_grad = False


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_frozen_inside_a_torch_style_module_under_train_one_step(mode, tiny_fixture):
    from modules import tnn

    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.clip_pretrained = CLIPTextEncoder("tiny")
            self.head = tnn.Linear(64, 3)

        def forward(self, ids):
            return self.head(self.clip_pretrained(ids))

    net = Net()
    load_text_tower(net.clip_pretrained, tiny_fixture[0])
    names = [p.name for p in net.get_parameters()]
    assert "clip_pretrained.transformer.resblocks.0.attn.in_proj_weight" in names
    assert all(p.name.startswith("head.") for p in net.trainable_params())
    before = {p.name: p.asnumpy().copy() for p in net.get_parameters()}

    class Loss(nn.Cell):
        def __init__(self, network):
            super().__init__(auto_prefix=False)  # keep the network's parameter names (as nn.WithLossCell does)
            self.network = network

        def construct(self, ids):
            out = self.network(ids)
            return (out * out).mean()

    step = nn.TrainOneStepCell(Loss(net), nn.SGD(net.trainable_params(), learning_rate=0.5))
    ids = Tensor(tiny_fixture[1][:4])
    for _ in range(2):
        step(ids)
    after = {p.name: p.asnumpy() for p in net.get_parameters()}
    for name in before:
        if name.startswith("clip_pretrained."):
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    assert np.abs(after["head.weight"] - before["head.weight"]).max() > 1e-6
    # The text features are unchanged by training and still match open_clip.
    assert max_relative_error(net.clip_pretrained(Tensor(tiny_fixture[1])).asnumpy(), tiny_fixture[2]) < 1e-5


@pytest.mark.slow
def test_parity_with_open_clip_vitb32_size():
    with np.load(os.path.join(FIXTURES, "text_encoder_vitb32.npz")) as data:
        seed, ids, expected = int(data["seed"]), data["ids"], data["expected"]
    encoder = CLIPTextEncoder("ViT-B/32")
    load_text_tower(encoder, openai_text_state_dict(512, 8, 12, 512, seed=seed))
    assert max_relative_error(encoder(Tensor(ids)).asnumpy(), expected) < 1e-5
