"""Run the delivery service with uvicorn, behind the header cap of the HTTP layer."""

from __future__ import annotations

import uvicorn

from retail_dp.delivery.api import create_app
from retail_dp.delivery.gate import header_guard, record_refused
from retail_dp.delivery.service import DeliveryService


def run(service: DeliveryService, host: str, port: int) -> None:
    app = create_app(service)

    def refused(client: str, status: int, detail: dict) -> None:
        record_refused(service, app.state.sequencer, client, status, detail)

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        http=header_guard(service.limits.max_header_bytes, refused),
        # the client address in the audit log and the sign-in throttle is the peer's own:
        # X-Forwarded-For is not trusted (put a proxy's address in --forwarded-allow-ips
        # of a uvicorn you run yourself if the service sits behind one)
        proxy_headers=False,
        server_header=False,
    )
