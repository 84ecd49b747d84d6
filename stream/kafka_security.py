"""Kafka client security: the TLS/SASL keyword arguments shared by every producer and consumer.

`client_kwargs(cfg)` is the one place that turns `cfg.kafka` into aiokafka arguments (the
worker's consumer and producer, Faust's own clients via `app.broker_credentials`, replay and
the simulator). Incomplete settings raise ConfigError naming the missing settings; an error
message never contains a password.
"""

from __future__ import annotations

import ssl

from .config import ConfigError, Settings


def ssl_context(cfg: Settings) -> ssl.SSLContext:
    """A verifying client context: the configured CA (else the system CAs), optional client cert."""
    k = cfg.kafka
    try:
        context = ssl.create_default_context(cafile=k.ssl_cafile)
        context.check_hostname = k.ssl_check_hostname
        if k.ssl_certfile:
            context.load_cert_chain(k.ssl_certfile, k.ssl_keyfile)
    except (OSError, ssl.SSLError) as exc:
        # paths are not secret; the key's content never reaches the message
        raise ConfigError(f"invalid setting: kafka TLS files (ssl_cafile={k.ssl_cafile}, "
                          f"ssl_certfile={k.ssl_certfile}, ssl_keyfile={k.ssl_keyfile}): "
                          f"{getattr(exc, 'reason', None) or exc.strerror or type(exc).__name__}"
                          ) from None
    return context


def client_kwargs(cfg: Settings) -> dict:
    """aiokafka keyword arguments for cfg.kafka; raises ConfigError when incomplete."""
    k = cfg.kafka
    out: dict = {"security_protocol": k.security_protocol}
    if k.security_protocol in ("SSL", "SASL_SSL"):
        out["ssl_context"] = ssl_context(cfg)
    if k.security_protocol.startswith("SASL_"):
        missing = [f"kafka.{name}" for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                   if not getattr(k, name)]
        if missing:
            raise ConfigError(f"invalid setting: security_protocol {k.security_protocol} needs "
                              f"{', '.join(missing)} (the password from "
                              "CCPULSE_KAFKA__SASL_PASSWORD or CCPULSE_KAFKA__SASL_PASSWORD_FILE)")
        out.update(sasl_mechanism=k.sasl_mechanism, sasl_plain_username=k.sasl_username,
                   sasl_plain_password=k.sasl_password)
    return out
