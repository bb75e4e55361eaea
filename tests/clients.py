"""Real boto3 clients for the emulator, over either wire protocol."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import botocore.session
from botocore.config import Config
from botocore.loaders import Loader


def protocol_session(protocol: str, data_dir: Path) -> botocore.session.Session:
    """A botocore session whose servicediscovery model lists only ``protocol``.

    botocore picks the first protocol it supports from the model's list (JSON 1.1
    today); a copy of its own model with one protocol makes it use the other.
    """
    model = Loader().load_service_model("servicediscovery", "service-2")
    model["metadata"]["protocols"] = [protocol]
    model["metadata"]["protocol"] = protocol
    target = data_dir / "servicediscovery" / model["metadata"]["apiVersion"]
    target.mkdir(parents=True, exist_ok=True)
    (target / "service-2.json").write_text(json.dumps(model))
    session = botocore.session.get_session()
    session.get_component("data_loader").search_paths.insert(0, str(data_dir))
    return session


def client(url: str, *, session: botocore.session.Session | None = None, attempts: int = 3):
    return boto3.Session(botocore_session=session or botocore.session.get_session()).client(
        "servicediscovery",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": attempts}),
    )
