"""Each benchmark figure is a function ``(size) -> dict`` with its numbers and its goal,
in a module of its family; :data:`FIGURES` names them all, in the order they run.

* :mod:`.rates`: the simulator's and the sentiment scorer's rates on one core
* :mod:`.consumer`: end to end beside the baseline and a bare consumer, a backlog
* :mod:`.producer`: our producer beside Kafka's Java tool and confluent-kafka
* :mod:`.freshness`: a tick's time to BigQuery, the BigQuery writers side by side
* :mod:`.flow`: the headless notebooks, both streams end to end
* :mod:`.brokers`: replication, a leader's failover, TLS and SCRAM logins
* :mod:`.read_cost`: the live chart's and notebook 04's reads as the table grows
* :mod:`.labs`: the time to grade each lab
* :mod:`.classroom`: a class of 30 on one machine

The services they run on, and what they share, are in :mod:`bench.services`.
Comparisons are made side by side in one run, because these machines are shared and
noisy: ratios are the figures that count.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.figures.brokers import failover, replication_cost, secure_kafka
from bench.figures.classroom import class_of_30
from bench.figures.consumer import backlog, end_to_end
from bench.figures.flow import notebook_flow, two_streams
from bench.figures.freshness import freshness, storage_write
from bench.figures.labs import lab_grading
from bench.figures.producer import producer_ceiling
from bench.figures.rates import sentiment_rate, simulator_rate
from bench.figures.read_cost import read_cost

FIGURES: dict[str, Callable[[str], dict]] = {
    "simulator_rate": simulator_rate,
    "end_to_end": end_to_end,
    "producer_ceiling": producer_ceiling,
    "freshness": freshness,
    "storage_write": storage_write,
    "notebook_flow": notebook_flow,
    "backlog": backlog,
    "replication_cost": replication_cost,
    "failover": failover,
    "sentiment_rate": sentiment_rate,
    "two_streams": two_streams,
    "secure_kafka": secure_kafka,
    "read_cost": read_cost,
    "lab_grading": lab_grading,
    "class_of_30": class_of_30,
}
# The figures that run on the services (inside `bench.services.using_services`).
PIPELINE_FIGURES = set(FIGURES) - {"simulator_rate", "sentiment_rate"}
