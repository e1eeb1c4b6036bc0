"""``modelstream keys generate``: Ed25519 keys to sign models and to trust them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelstream.cli.context import BackplaneOption
from modelstream.cli.errors import reported
from modelstream.models.integrity import generate_keys

app = typer.Typer(help="Signing keys for models.", no_args_is_help=True)


@app.command("generate")
@reported
def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the key pair to.")],
    name: Annotated[str, typer.Option("--name", help="File name stem.")] = "modelstream",
    backplane_url: BackplaneOption = None,
) -> None:
    """Write NAME.key (private, keep it secret) and NAME.pub (give it to services)."""
    pair = generate_keys(out, name)
    print(f"private key: {pair.private_path}  (sign with: models publish --sign-key)")
    print(f"public key:  {pair.public_path}  (trust with: deploy --trust-key)")
    print(f"key id:      {pair.key_id}")
