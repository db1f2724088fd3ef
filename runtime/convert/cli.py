"""`tessera-convert INPUT.gguf --out FOLDER`: a GGUF file to a Hugging Face Llama folder for Tessera.

Refused input prints one line on stderr naming the file or field and the fix, and exits with status 2.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from tessera.runtime.convert.convert import DTYPES, convert_gguf
from tessera.runtime.convert.errors import ConversionError
from tessera.runtime.convert.shards import parse_size

EXIT_REFUSED = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tessera-convert",
        description="Convert a llama.cpp GGUF (Llama architecture, byte-level BPE vocabulary) into a Hugging "
                    "Face folder: config.json, safetensors (dequantized), tokenizer.json and friends.",
    )
    parser.add_argument("input", type=Path, metavar="INPUT.gguf", help="the GGUF model file")
    parser.add_argument("--out", type=Path, required=True, metavar="FOLDER", help="output folder")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32",
                        help="dtype of the written weights (default: float32)")
    parser.add_argument("--max-shard-size", default="2GB", metavar="SIZE",
                        help="split the weights into shards of at most SIZE, e.g. 500MB, 2GB (default: 2GB)")
    parser.add_argument("--force", action="store_true",
                        help="replace the converted files of a non-empty output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="tessera-convert: warning: %(message)s")
    try:
        parse_size(args.max_shard_size)
    except ValueError as e:
        parser.error(f"--max-shard-size: {e}")  # exits 2 with the usage line
    try:
        result = convert_gguf(args.input, args.out, dtype=args.dtype, max_shard_size=args.max_shard_size,
                              force=args.force, progress=not args.quiet)
    except ConversionError as e:
        print(f"tessera-convert: error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as e:
        print(f"tessera-convert: error: {e.filename or args.input}: {e.strerror or e}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print("tessera-convert: interrupted; no output was written", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("TESSERA_DEBUG"):
            raise
        print(f"tessera-convert: internal error converting {args.input}: {type(e).__name__}: {e} "
              "(rerun with TESSERA_DEBUG=1 for the traceback and report it)", file=sys.stderr)
        return 1
    c = result.config
    print(f"wrote {result.folder}: {c['num_hidden_layers']} layers, hidden {c['hidden_size']}, "
          f"vocab {c['vocab_size']}, {args.dtype}, from {result.quant_types} in {result.seconds:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
