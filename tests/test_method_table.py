"""The table of KD methods (kdlib.distill.methods): every row's module has the interface, DVC reads the table,
and a new method needs only a row and a one-file module (here a toy "logits L1" KD)."""
import importlib
import math
from pathlib import Path

import pytest
import torch
import yaml

from kdlib.config import Distill, load_params, streams, validate
from kdlib.data.prepared import save_prepared
from kdlib.data.sources import build
from kdlib.distill.distiller import Distiller
from kdlib.distill.method import AlphaWeighted, Method, method_class
from kdlib.distill.methods import METHODS
from kdlib.distill.teacher_outputs import write
from kdlib.engine.trainer import train
from kdlib.errors import KDError

TOY_MODULE = '''
from kdlib.distill.method import AlphaWeighted


class Method(AlphaWeighted):
    def kd(self, d, logits, target):
        return (logits - target).abs().mean()
'''
TOY_ROW = {"module": "toy_logits_l1", "label": "KD (logit L1)", "keys": ["alpha", "schedule", "alpha_end"],
           "defaults": {}, "uses_alpha": True, "pairs_stages": False, "needs_class_indices": False,
           "teacher_logits_only": True}
FIELDS = {"module", "label", "keys", "defaults", "uses_alpha", "pairs_stages", "needs_class_indices",
          "teacher_logits_only"}


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy method, added through the table alone: a row pointing at a module on the path."""
    folder = tmp_path / "toy_methods"
    folder.mkdir()
    (folder / "toy_logits_l1.py").write_text(TOY_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setitem(METHODS, "toy", TOY_ROW)
    return "toy"


@pytest.mark.parametrize("name", list(METHODS))
def test_every_row_names_a_module_with_the_interface(name):
    row = METHODS[name]
    assert set(row) == FIELDS
    assert set(row["defaults"]) <= set(row["keys"]) <= set(Distill.model_fields) - {"method"}
    cls = method_class(name)
    assert cls is importlib.import_module(row["module"]).Method and issubclass(cls, Method)
    assert callable(cls.terms) and callable(cls.deployable)
    # The Distiller weighs CE by 1 - alpha exactly for the rows that say alpha applies.
    assert row["uses_alpha"] == issubclass(cls, AlphaWeighted)


def test_dvc_reads_the_table_as_parameters():
    from dvc.utils.serialize._py import parse_py
    path = Path(importlib.import_module("kdlib.distill.methods").__file__)
    assert parse_py(path.read_text(), str(path))["METHODS"] == METHODS


def test_toy_method_validates_by_its_row(toy, tiny_raw):
    tiny_raw["runs"]["student_kd"]["distill"] = {"method": "toy", "alpha": 0.3}
    assert validate(tiny_raw).runs["student_kd"].distill.method == "toy"
    tiny_raw["runs"]["student_kd"]["distill"] = {"method": "toy", "temperature": 2.0}
    with pytest.raises(KDError, match=r"runs.student_kd.distill: method 'toy' does not use temperature "
                                      r"\(it reads: alpha, alpha_end, schedule\)"):
        validate(tiny_raw)
    tiny_raw["runs"]["student_kd"]["distill"] = {"method": "toys"}
    with pytest.raises(KDError, match="distill.method: Input should be 'logits', .* 'stablekd' or 'toy'"):
        validate(tiny_raw)


def test_toy_method_loss_by_hand(toy):
    student, teacher = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        for layer, bias in ((student, [1.0, 0.0]), (teacher, [0.0, 3.0])):
            layer.weight.zero_()
            layer.bias.copy_(torch.tensor(bias))
    x, y = torch.randn(4, 2), torch.zeros(4, dtype=torch.long)
    logits, losses = Distiller(student, teacher, Distill(method="toy", alpha=0.5)).forward_train(x, y)
    # logits [1, 0] against the teacher's [0, 3]: |1 - 0| and |0 - 3|, mean 2; CE of [1, 0] at class 0.
    assert list(losses) == ["ce", "kd"]
    assert losses["kd"].item() == pytest.approx(0.5 * 2.0)
    assert losses["ce"].item() == pytest.approx(0.5 * math.log(1 + math.exp(-1)), rel=1e-6)
    assert torch.equal(logits, student(x))


def test_toy_method_trains_end_to_end(toy, tmp_path, monkeypatch):
    params = {"profile": "toy", "datasets": {"digits": {"source": "digits", "image_size": 16}},
              "defaults": {"dataset": "digits", "epochs": 1, "batch_size": 64, "augment": {"crop_padding": 0,
                                                                                             "hflip": False}},
              "runs": {"teacher": {"model": "lenet5bn", "width": 0.5},
                       "student": {"model": "lenet5bn", "width": 0.25, "teacher": "teacher",
                                   "distill": {"method": "toy", "alpha": 0.5}}}}
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(yaml.safe_dump(params))
    params = load_params("params.yaml")
    save_prepared(build(params.datasets["digits"]), params.layout.dataset_dir("digits"))
    cpu = torch.device("cpu")
    train("teacher", params, cpu)
    (stream,) = streams(params)  # the row says the loss reads only the teacher's logits: they are replayed
    write(params, stream, cpu)
    metrics = train("student", params, cpu)
    assert metrics is not None
    history = (tmp_path / "results" / "toy" / "runs" / "student" / "history.csv").read_text()
    assert "kd" in history.splitlines()[0]
