"""Bad settings fail early, in one line that names the setting, the value and what is allowed; values that would
silently do the wrong thing (NaN thresholds, a factor > 1, "no" for a switch, NaN or channels-last images, fp16 on
the CPU) are rejected; user queries that are not yes/no questions warn."""

import math
import os
import warnings

import pytest
import torch

from vlmteach_fast.config_io import load_config
from vlmteach_fast.instance import load_image
from vlmteach_fast.optimization import OptimizeConfig


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(max_grad_norm=math.nan), r"`OptimizeConfig\.max_grad_norm` must be a finite number, got nan"),
    (dict(min_delta=math.nan), r"`OptimizeConfig\.min_delta` must be a number >= 0, finite, got nan"),
    (dict(min_delta=-0.1), r"`OptimizeConfig\.min_delta` must be a number >= 0, finite, got -0\.1"),
    (dict(lr_decay_on_failure=1.5), r"`OptimizeConfig\.lr_decay_on_failure` must be in \(0, 1\].*got 1\.5"),
    (dict(weight_decay=-1.0), r"`OptimizeConfig\.weight_decay` must be a number >= 0, finite, got -1\.0"),
    (dict(weight_decay=math.inf), r"`OptimizeConfig\.weight_decay` must be a number >= 0, finite, got inf"),
    (dict(progress="no"), r"`OptimizeConfig\.progress` must be true or false, got 'no'"),
    (dict(keep_initial_if_better=1), r"`OptimizeConfig\.keep_initial_if_better` must be true or false, got 1"),
])
def test_values_that_silently_do_the_wrong_thing_are_rejected(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        OptimizeConfig(**kwargs)


@pytest.mark.parametrize("text,pattern", [
    ("max_steps: [1, 2\n", r"config file '.*c\.yaml': not valid YAML at line 2, column 1"),
    ("n: 0\n", r"config file '.*c\.yaml': `n` must be an int >= 1, got 0"),
    ("n: five\n", r"`n` must be an int >= 1, got 'five'"),
    ("rounds: -1\n", r"`rounds` must be an int >= 0, got -1"),
    ("weight_decay: .nan\n", r"weight_decay` must be a number >= 0, finite, got nan"),
    ("progress: 'no'\n", r"progress` must be true or false, got 'no'"),
])
def test_config_files_fail_with_the_file_and_the_setting(tmp_path, text, pattern):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=pattern) as exc:
        load_config(str(path))
    assert "\n" not in str(exc.value)  # one line


def test_yaml_floats_without_a_dot_are_numbers(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\nmax_grad_norm: 2E+0\nsampling: {guidance_scale: 5e0}\nlora: {rank: 2}\n")
    config, _ = load_config(str(path))  # YAML 1.1 reads 1e-3 as the string "1e-3"
    assert (config.lr, config.max_grad_norm, config.sampling.guidance_scale) == (0.001, 2.0, 5.0)
    path.write_text("lr: '1e-3'\n")  # quoted: a string, refused by name
    with pytest.raises(ValueError, match=r"`OptimizeConfig\.lr` must be a number > 0, finite, got '1e-3'"):
        load_config(str(path))


def test_json_config_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"max_steps": 3,\n "lr": }')
    with pytest.raises(ValueError, match=r"config file '.*c\.json': not valid JSON at line 2"):
        load_config(str(path))


@pytest.mark.parametrize("image,pattern", [
    (torch.full((3, 32, 32), math.nan), r"`image` has 3072 non-finite value\(s\)"),
    (torch.rand(32, 32), r"`image` must be a \(3, H, W\) tensor in \[0, 1\], got 2-D shape \(32, 32\)"),
    (torch.rand(32, 32, 3), r"channels first\), got shape \(32, 32, 3\) \(channels last: use image\.permute"),
    (torch.rand(3, 32, 32) * 255, r"`image` values must be in \[0, 1\]"),
    ((torch.rand(3, 32, 32) * 255).to(torch.uint8), r"must be a float tensor.*uint8"),
    (torch.rand(3, 0, 0), r"`image` is empty: shape \(3, 0, 0\)"),
])
def test_bad_image_tensors_are_rejected_by_name(image, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_image(image)
    load_image(torch.rand(1, 3, 32, 32))  # a batch of one is fine


def test_user_queries_that_are_not_yes_no_questions_warn():
    from vlmteach_fast.testing import BrightnessTeacher, first_frame, tiny_ti2v_pipeline
    from vlmteach_fast.baselines import baseline
    from vlmteach_fast.instance import SamplingConfig

    kw = dict(image=first_frame(), sampling=SamplingConfig(num_frames=5, final_steps=1))
    pipe, teacher = tiny_ti2v_pipeline(), BrightnessTeacher()
    for bad in ("Describe the video.", "What colour is the ball?"):
        with pytest.warns(UserWarning, match=r"1 of 2 are not yes/no questions.*\[" + repr(bad).replace("?", r"\?")
                          .replace(".", r"\.") + r"\]"):
            baseline(pipe, teacher, "p", queries=[bad, "Is it red?"], **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        baseline(pipe, teacher, "p", queries=["Is the ball red?", "Does the ball stay whole?"], **kw)


# ----- the solve command: checks before any model loads -----

@pytest.fixture
def solve_args(tmp_path, monkeypatch):
    import vlmteach_fast.loading as loading

    def no_load(*a, **k):
        raise AssertionError("a model was loaded before the settings were checked")

    monkeypatch.setattr(loading, "load_pipeline", no_load)
    monkeypatch.setattr(loading, "load_teacher", no_load)
    (tmp_path / "pipe").mkdir()
    (tmp_path / "teacher").mkdir()

    def args(*extra):
        return ["solve", "--pipeline", str(tmp_path / "pipe"), "--teacher", str(tmp_path / "teacher"), "--prompt",
                "p", "--out", str(tmp_path / "out"), *extra]

    return args


@pytest.mark.parametrize("extra,pattern", [
    (("--device", "gpu"), r"--device 'gpu' is not a device; allowed: cpu, cuda, cuda:N"),
    (("--device", "cuda"), r"--device 'cuda': no CUDA device is visible to torch here.*allowed: cpu"),
    (("--device", "cpu", "--dtype", "float16"), r"--dtype float16 is not supported on the CPU.*float32, bfloat16"),
    (("--teacher-device", "gpu:1"), r"--teacher-device 'gpu:1' is not a device"),
])
def test_solve_checks_device_and_dtype_before_models_load(solve_args, tmp_path, extra, pattern):
    from vlmteach_fast.cli import main

    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(SystemExit, match=pattern):
        main(solve_args(*extra))
    assert not (tmp_path / "out").exists()  # no empty output folder left behind


def test_solve_refuses_an_out_folder_holding_other_files(solve_args, tmp_path):
    from vlmteach_fast.cli import main

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("precious")
    with pytest.raises(SystemExit, match=r"--out '.*out' holds files that are not a vlmteach-fast output set "
                                         r"\(thesis\.tex\)"):
        main(solve_args())
    assert os.listdir(tmp_path / "out") == ["thesis.tex"]


def test_solve_refuses_an_empty_out_by_name(solve_args, tmp_path):
    from vlmteach_fast.cli import main

    args = solve_args()
    args[args.index("--out") + 1] = ""
    with pytest.raises(SystemExit, match=r"--out must be a non-empty folder path, got ''"):
        main(args)


def test_optimize_checks_out_dir_before_the_first_step(tmp_path, monkeypatch):
    import vlmteach_fast.optimization as optimization

    def no_compute(*a, **k):
        raise AssertionError("the instance was set up before `out_dir` was checked")

    monkeypatch.setattr(optimization, "setup_instance", no_compute)
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match=r"`out_dir` '.*file' exists and is not a directory"):
        optimization.optimize(None, None, "p", out_dir=tmp_path / "file")


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory):
    from vlmteach_fast.testing import tiny_ti2v_pipeline

    path = tmp_path_factory.mktemp("models") / "pipe"  # a Wan image-to-video pipeline: frames 4k+1, sizes % 16
    tiny_ti2v_pipeline().save_pretrained(path)
    return path


@pytest.mark.parametrize("config,image_size,pattern", [
    ("sampling: {num_frames: 6}\n", 32, r"`num_frames` must be k \* 4 \+ 1 .*got 6; nearest accepted values: 5, 9"),
    # a first frame of any size is fitted to the model (first_frame.resolve_size); a configured size is not
    ("sampling: {num_frames: 5, height: 30, width: 30}\n", 32,
     r"`height` and `width` must be multiples of \(16, 16\).*got \(30, 30\)"),
    ("sampling: {num_frames: 5}\n", None,
     r"`image` is required for the image-to-video WanImageToVideoPipeline, got None"),
])
def test_solve_checks_geometry_against_the_pipeline_configs_before_models_load(solve_args, pipeline_folder, tmp_path,
                                                                               config, image_size, pattern):
    from PIL import Image

    from vlmteach_fast.cli import main

    (tmp_path / "c.yaml").write_text(config)
    args = solve_args("--config", str(tmp_path / "c.yaml"))
    args[args.index("--pipeline") + 1] = str(pipeline_folder)
    if image_size:
        Image.new("RGB", (image_size, image_size)).save(tmp_path / "f.png")
        args += ["--image", str(tmp_path / "f.png")]
    with pytest.raises(SystemExit, match=pattern):
        main(args)
    assert not (tmp_path / "out").exists()


def test_an_empty_pil_image_is_refused_by_name():
    from PIL import Image

    with pytest.raises(ValueError, match=r"`image` is empty \(0x0 pixels\)"):
        load_image(Image.new("RGB", (0, 0)))


def test_nan_frames_are_blamed_on_the_model_not_on_a_value_range():
    from vlmteach_fast.teacher.base import check_frames

    frames = torch.rand(1, 5, 3, 8, 8)
    frames[0, 2] = math.nan  # what a video model with corrupted weights returns
    with pytest.raises(ValueError, match=r"`frames` holds 192 NaN / inf value\(s\) of 960: the video model produced"):
        check_frames(frames)


@pytest.mark.parametrize("part,pattern", [
    ("vae", r"model_index\.json lists `vae` \(AutoencoderKLWan\) but the folder has no vae/"),
    ("tokenizer", r"model_index\.json lists `tokenizer` \(.*\) but the folder has no tokenizer/"),
])
def test_a_pipeline_folder_missing_a_component_fails_in_one_line(solve_args, pipeline_folder, tmp_path, part, pattern):
    import shutil

    from vlmteach_fast.cli import main

    broken = tmp_path / "broken"
    shutil.copytree(pipeline_folder, broken)
    shutil.rmtree(broken / part)
    args = solve_args()
    args[args.index("--pipeline") + 1] = str(broken)
    with pytest.raises(SystemExit, match=pattern):
        main(args)


def test_a_teacher_folder_without_its_tokenizer_fails_in_one_line(solve_args, tmp_path):
    from vlmteach_fast.cli import main

    (tmp_path / "teacher" / "config.json").write_text('{"model_type": "qwen2_vl"}')
    with pytest.raises(SystemExit, match=r"--teacher '.*teacher' has no tokenizer \(none of tokenizer\.json"):
        main(solve_args())


def test_demo_with_no_instances_fails_in_one_line(tmp_path):
    from vlmteach_fast.cli import main

    with pytest.raises(SystemExit, match=r"error: `DemoConfig\.instances` must be"):
        main(["demo", "--instances", "0", "--out", str(tmp_path / "d")])
