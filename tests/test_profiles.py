"""Profiles side by side: two more profiles (an image folder of generated pictures) run beside the tiny one in its
finished workspace, one through Snakemake as `make PARAMS=...` runs it, one through DVC; each keeps to its own
folders, and both tools find every profile up to date afterwards."""
import hashlib
import shutil
import sys

import yaml
from PIL import Image, ImageDraw

from tests.conftest import DVC, SNAKEMAKE, run, run_all


def draw_image_folder(root, per_class):
    """Red squares and blue discs on grey, at random places and sizes: train/ and val/ folders of class folders."""
    import random
    rng = random.Random(0)
    for split, count in (("train", per_class), ("val", per_class // 2)):
        for shape in ("disc", "square"):
            (root / split / shape).mkdir(parents=True)
            for i in range(count):
                image = Image.new("RGB", (24, 24), (128, 128, 128))
                size, x, y = rng.randint(6, 12), rng.randint(0, 10), rng.randint(0, 10)
                box = (x, y, x + size, y + size)
                draw = ImageDraw.Draw(image)
                (draw.ellipse if shape == "disc" else draw.rectangle)(box, fill=(40, 60, 200) if shape == "disc"
                                                                      else (200, 40, 40))
                image.save(root / split / shape / f"{i:03d}.png")


def folder_profile(name):
    return {"profile": name, "description": "two shapes from an image folder",
            "datasets": {"shapes": {"source": "imagefolder", "path": "data/raw/two_shapes", "image_size": 16}},
            "runs": {"net": {"model": "lenet5bn", "dataset": "shapes", "width": 0.25, "epochs": 1, "batch_size": 16,
                             "augment": {"crop_padding": 0, "hflip": False}}}}


def digests(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_profiles_keep_to_their_own_folders_and_both_tools_stay_clean_for_each(finished):
    ws = finished
    draw_image_folder(ws / "data/raw/two_shapes", 20)
    tiny = {folder: digests(ws / folder / "tiny") for folder in ("data", "results")}
    for name in ("by_snakemake", "by_dvc"):
        (ws / f"configs/{name}.yaml").write_text(yaml.safe_dump(folder_profile(name)))
    try:
        for name in ("by_snakemake", "by_dvc"):
            run([sys.executable, "-m", "kdlib.pipeline", "dvc", "--params", f"configs/{name}.yaml"], ws)
        # Side by side, one core each: Snakemake (its DVC bookkeeping after, as `make PARAMS=...` does it), and DVC
        # alone through the profile's own pipeline file.
        run_all([[sys.executable, "-m", "kdlib.warm", SNAKEMAKE, "--cores", "1", "--config",
                  "params=configs/by_snakemake.yaml"],
                 [sys.executable, "-m", "kdlib.warm", DVC, "repro", "--quiet", "pipelines/by_dvc/dvc.yaml"]], ws)
        run([DVC, "commit", "--force", "--quiet", "pipelines/by_snakemake/dvc.yaml"], ws)
        run([SNAKEMAKE, "--touch", "--cores", "1", "--quiet", "--config", "params=configs/by_snakemake.yaml"], ws)
        for name in ("by_snakemake", "by_dvc"):
            assert (ws / f"results/{name}/report.md").is_file() and (ws / f"results/{name}/runs/net/model.onnx").is_file()
        # Snakemake for each profile, the tiny one (params.yaml) too, and `dvc status` over every pipeline file (one
        # DVC command at a time: each takes the repository's lock). Another spelling of a file's path names the same
        # file in the commands.
        checks = run_all([*([SNAKEMAKE, "-n", "--config", f"params={f}"] for f in
                            ("configs/by_snakemake.yaml", "./configs/../configs/by_dvc.yaml", "params.yaml")),
                          [DVC, "status"]], ws)
        for done in checks:
            assert ("Nothing to be done" if done.args[0] == SNAKEMAKE else "Data and pipelines are up to date") \
                in done.stdout, (done.args, done.stdout[-2000:])
        assert {folder: digests(ws / folder / "tiny") for folder in ("data", "results")} == tiny
    finally:
        for path in ("pipelines", "results/by_snakemake", "results/by_dvc", "data/by_snakemake", "data/by_dvc",
                     "data/raw", "configs/by_snakemake.yaml", "configs/by_dvc.yaml"):
            target = ws / path
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
