"""Change one thing, re-run only what it changes: code and table edits on the finished tiny workspace, each
answered by both tools with exactly the stages whose result it can change.

DVC's `dvc status` names the stages whose own dependencies changed (`dvc repro` then re-runs a later stage only if
its inputs' content changes); `snakemake -n` plans those and everything downstream of them."""
import pytest
import yaml

from kdlib.pipeline import render_dvc_yaml, stages
from tests.conftest import REPO, TINY, descendants, edited_file


def append_line(text: str) -> str:
    return text + "# an edited line\n"


def replace(old: str, new: str):
    def edit(text: str) -> str:
        assert text.count(old) == 1, f"'{old}' should occur once"
        return text.replace(old, new)
    return edit


def test_a_line_of_the_dkd_loss_reruns_the_dkd_runs(finished):
    snake, dvc = edited_file(finished, "kdlib/distill/dkd.py", append_line)
    assert dvc == {"train_s3_dkd"}
    assert snake == {"train_s3_dkd", "export_s3_dkd", "tables"} == descendants(dvc)


def test_the_sr_students_network_reruns_the_sr_students_only(finished):
    snake, dvc = edited_file(finished, "kdlib/dense/attention_sr.py", append_line)
    assert dvc == {"train_dense_sr_tiny_scratch", "train_dense_sr_tiny_kd", "export_dense_sr_tiny_scratch",
                   "export_dense_sr_tiny_kd"}  # the exports run the network's code too
    assert snake == dvc | {"tables"}


def test_a_report_module_reruns_the_tables(finished):
    assert edited_file(finished, "kdlib/report/seed003.py", append_line) == ({"tables"}, {"tables"})


def test_the_wording_of_a_config_error_reruns_nothing(finished):
    edit = replace("names no run", "names no such run")
    path = next(p for p in ("kdlib/config/checks.py", "kdlib/config/load.py")
                if (finished / p).is_file() and (finished / p).read_text().count("names no run") == 1)
    assert edited_file(finished, path, edit) == (set(), set())


def test_a_comment_in_the_params_file_reruns_nothing(finished):
    # DVC's recipes stage compares the file's values, not its text; Snakemake compares each stage's values.
    assert edited_file(finished, "params.yaml", append_line) == (set(), set())


def test_a_model_family_no_run_uses_reruns_nothing(finished):
    assert not any("kdlib/models/wrn.py" in s.deps for s in stages(str(TINY)))
    assert edited_file(finished, "kdlib/models/wrn.py", append_line) == (set(), set())


def test_dkds_default_beta_reruns_the_dkd_runs_that_take_it(finished):
    snake, dvc = edited_file(finished, "kdlib/distill/methods.py", replace('"beta": 8.0', '"beta": 9.0'))
    assert dvc == {"train_s3_dkd"}
    assert snake == descendants(dvc)


def test_a_dkd_run_that_sets_beta_does_not_follow_the_default(tmp_path):
    raw = yaml.safe_load(TINY.read_text())
    raw["runs"]["s3_dkd"]["distill"]["beta"] = 8.0
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    by_name = {s.name: s for s in stages(str(params))}
    assert "METHODS.dkd.defaults.beta" not in by_name["train_s3_dkd"].tables["kdlib/distill/methods.py"]
    assert "METHODS.dkd.defaults.temperature" not in by_name["train_s3_dkd"].tables["kdlib/distill/methods.py"]
    default = {s.name: s for s in stages(str(TINY))}["train_s3_dkd"].tables["kdlib/distill/methods.py"]
    assert {"METHODS.dkd.defaults.beta", "METHODS.dkd.module"} <= set(default)


def test_the_training_loop_reruns_every_training_stage_and_no_preparation(finished):
    snake, dvc = edited_file(finished, "kdlib/engine/trainer.py", append_line)
    training = {s.name for s in stages(str(TINY)) if s.kind == "train"}
    assert dvc == training
    assert snake == descendants(training)
    assert not {s for s in snake if s.startswith(("prepare", "train_dense"))}


@pytest.mark.parametrize("profile", ["params.yaml", "configs/tiny.yaml"])
def test_dvc_yaml_is_readable(profile):
    _, text = render_dvc_yaml(str(REPO / profile))
    assert "&id" not in text and "*id" not in text
    if profile == "params.yaml":
        assert len(text.splitlines()) <= 3000
    name = "train_s3_at" if "tiny" in profile else "train_vgg_shallow_kd_feature"  # feature KD: a live teacher
    entry = yaml.safe_load(text)["stages"][name]
    assert entry["deps"][:3] == ["stages/train.py", f"results/{'tiny' if 'tiny' in profile else 'demo'}/recipes/{name}.json", entry["deps"][2]]
    assert entry["deps"][2].endswith("train.pt") and entry["deps"][5].endswith("deploy.pt")  # the teacher's, fused
    assert "params" not in entry  # its values are in its recipe file


def test_a_schema_default_reruns_the_runs_that_take_it(finished):
    # Distill's literal defaults are one param of every distilled run that takes any of them; scratch runs have none.
    snake, dvc = edited_file(finished, "kdlib/config/schema.py", replace(
        "kl_weight: Annotated[float, Field(ge=0, le=1e6)] = 1.0", "kl_weight: Annotated[float, Field(ge=0, le=1e6)] = 2.0"))
    taking = {s.name for s in stages(str(TINY)) if "Distill" in s.tables.get("kdlib/config/schema.py", [])}
    assert dvc == taking and {"train_s3_dkd", "train_s3_stablekd_stage0", "train_student_kd"} <= taking
    assert not {s for s in taking if s.endswith(("_student", "gen3_scratch", "teacher"))}
    assert snake == descendants(taking)
