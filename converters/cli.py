"""The command line shared by ``python -m converters.<target>``."""

from __future__ import annotations

import argparse
from pathlib import Path

from model.checkpoint import CheckpointError

from .build import convert
from .registry import get_target
from .spec import FORMS, PRECISIONS, ConversionError, ConvertRequest


def parser_for(target: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m converters.{target}",
        description=f"Convert BaS to {target}: writes the artifact and its JSON manifest, "
        "prints the artifact's path last.",
    )
    parser.add_argument("--variant", default="S", help="S or L")
    parser.add_argument("--weights", default="shipped", help="'shipped' or a .safetensors path")
    parser.add_argument("--precision", default="fp32", help=" | ".join(PRECISIONS))
    parser.add_argument("--form", default="frame", help=" | ".join(FORMS))
    parser.add_argument("--image-size", type=int, default=240)
    parser.add_argument("--calibration", type=Path, help="BUV/FLA-Net/plain folder (int8)")
    parser.add_argument("--out", type=Path, default=Path("artifacts"))
    return parser


def main(target_name: str, argv: list[str] | None = None) -> int:
    parser = parser_for(target_name)
    args = parser.parse_args(argv)
    request = ConvertRequest(
        variant=args.variant,
        weights=args.weights,
        precision=args.precision,
        form=args.form,
        image_size=args.image_size,
        calibration=args.calibration,
        out=args.out,
    )
    try:
        artifact = convert(get_target(target_name), request)
    except (ConversionError, CheckpointError) as err:
        parser.exit(2, f"error: {err}\n")
    print(artifact)
    return 0
