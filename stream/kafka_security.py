"""Kafka client security: the TLS/SASL keyword arguments shared by every producer and consumer."""

from __future__ import annotations

import ssl

from .config import ConfigError, Settings


def client_kwargs(cfg: Settings) -> dict:
    """aiokafka keyword arguments for cfg.kafka; raises ConfigError when incomplete."""
    k = cfg.kafka
    out: dict = {"security_protocol": k.security_protocol}
    if k.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=k.ssl_cafile)
        context.check_hostname = k.ssl_check_hostname
        if k.ssl_certfile:
            context.load_cert_chain(k.ssl_certfile, k.ssl_keyfile)
        out["ssl_context"] = context
    if k.security_protocol.startswith("SASL_"):
        if not (k.sasl_mechanism and k.sasl_username and k.sasl_password):
            raise ConfigError("invalid setting: SASL needs kafka.sasl_mechanism, "
                              "kafka.sasl_username and kafka.sasl_password")
        out.update(sasl_mechanism=k.sasl_mechanism, sasl_plain_username=k.sasl_username,
                   sasl_plain_password=k.sasl_password)
    return out
