"""`retail-dp serve-sql`: a read-only PostgreSQL-wire endpoint over the published snapshot,
governed by the delivery service's policies (translate.py says what SQL it accepts)."""

from __future__ import annotations

import asyncio

from retail_dp.delivery.service import DeliveryService
from retail_dp.delivery.sql_endpoint.gateway import Gateway
from retail_dp.delivery.sql_endpoint.wire import serve


def run(service: DeliveryService, host: str, port: int) -> None:
    asyncio.run(serve(Gateway(service), host, port))
