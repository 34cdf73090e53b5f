"""Print a new VAPID key pair for the environment (VAPID_PRIVATE_KEY) and for browsers."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.management.base import BaseCommand


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Command(BaseCommand):
    """Generate a P-256 key pair; nothing is written anywhere but standard output."""

    help = (
        "Generate a VAPID key pair. Put the VAPID_PRIVATE_KEY line in the environment (with "
        "VAPID_SUBJECT=mailto:you@example.org); the public key is served to browsers at "
        "/push/vapid-public-key/."
    )

    def handle(self, *args, **options) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        private_raw = key.private_numbers().private_value.to_bytes(32, "big")
        public_raw = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.stdout.write(f"VAPID_PRIVATE_KEY={_b64url(private_raw)}")
        self.stdout.write(f"# public key (applicationServerKey): {_b64url(public_raw)}")
