"""The compiled plan: the only contract between the compiler and the runtime.

Every model is immutable and fully resolved: imports inlined, defaults applied,
durations in seconds, sizes in bytes, names resolved.  ``PLAN_VERSION`` changes
whenever a change would make an old runtime misread a new plan.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

PLAN_VERSION = 1

NonNeg = Annotated[float, Field(ge=0)]
Positive = Annotated[int, Field(gt=0)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ------------------------------------------------------------------ clusters


class NodeSpec(_Model):
    name: str
    host: str
    port: Annotated[int, Field(ge=0, le=65535)]
    zone: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class FullMeshTopology(_Model):
    kind: Literal["full_mesh"] = "full_mesh"


class StaticTopology(_Model):
    kind: Literal["static"] = "static"


class ClientServerTopology(_Model):
    kind: Literal["client_server"] = "client_server"
    servers: tuple[str, ...] = ()  # node names; empty means the seeds


class HyParViewTopology(_Model):
    kind: Literal["hyparview"] = "hyparview"
    active: Positive = 5
    passive: Positive = 30
    active_walk_length: Positive = 6
    passive_walk_length: Positive = 3
    shuffle_interval: NonNeg = 10.0
    shuffle_active: Annotated[int, Field(ge=0)] = 3
    shuffle_passive: Annotated[int, Field(ge=0)] = 4


Topology = Annotated[
    Union[FullMeshTopology, StaticTopology, ClientServerTopology, HyParViewTopology],
    Field(discriminator="kind"),
]


class PhiDetector(_Model):
    """Phi accrual failure detector (defaults as in Akka)."""

    kind: Literal["phi"] = "phi"
    threshold: Annotated[float, Field(gt=0)] = 8.0
    heartbeat: Annotated[float, Field(gt=0)] = 1.0
    acceptable_pause: NonNeg = 3.0
    min_std_dev: Annotated[float, Field(gt=0)] = 0.1
    max_samples: Positive = 1000


class SwimDetector(_Model):
    kind: Literal["swim"] = "swim"
    probe_interval: Annotated[float, Field(gt=0)] = 1.0
    probe_timeout: Annotated[float, Field(gt=0)] = 0.5
    indirect_probes: Annotated[int, Field(ge=0)] = 3
    suspicion_timeout: Annotated[float, Field(gt=0)] = 5.0


FailureDetector = Annotated[Union[PhiDetector, SwimDetector], Field(discriminator="kind")]


class Secret(_Model):
    """A secret that is looked up at run time and never stored in the plan."""

    source: Literal["env", "file"]
    name: str  # environment variable name, or file path


class TLS(_Model):
    cert: str
    key: str
    ca: str | None = None


class Security(_Model):
    cookie: Secret | None = None
    tls: TLS | None = None


class Cluster(_Model):
    name: str
    nodes: tuple[NodeSpec, ...]
    seeds: tuple[str, ...] = ()
    topology: Topology = Field(default_factory=FullMeshTopology)
    failure_detector: FailureDetector = Field(default_factory=PhiDetector)
    security: Security = Field(default_factory=Security)

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


# ---------------------------------------------------------- messages, channels


class FieldType(_Model):
    """``str``, ``int``, ``float``, ``bool``, ``bytes``, ``any``, ``list``, ``map``, ``optional`` or a message name."""

    name: str
    args: tuple["FieldType", ...] = ()

    def render(self) -> str:
        if not self.args:
            return self.name
        return f"{self.name}[{', '.join(a.render() for a in self.args)}]"


class MessageField(_Model):
    name: str
    type: FieldType
    has_default: bool = False
    default: Any = None


class MessageType(_Model):
    name: str
    fields: tuple[MessageField, ...] = ()
    source: str | None = None  # file it was declared in


class Channel(_Model):
    name: str  # fully qualified: "jobs", "std.control"
    priority: Literal["high", "normal", "low"] = "normal"
    delivery: Literal["best_effort", "at_least_once"] = "best_effort"
    ordering: Literal["none", "fifo", "causal"] = "fifo"
    parallelism: Positive = 1
    chunk: Positive = 262144  # bytes
    carries: tuple[str, ...] = ()  # message type names; empty = any


# ---------------------------------------------------------------- ecosystems


class ComponentRef(_Model):
    module: str
    cls: str

    @property
    def text(self) -> str:
        return f"{self.module}:{self.cls}"


class Supervision(_Model):
    strategy: Literal["one_for_one", "one_for_all", "rest_for_one"] = "one_for_one"
    restart: Literal["permanent", "transient", "temporary"] = "permanent"
    max_restarts: Annotated[int, Field(ge=0)] = 3
    within: Annotated[float, Field(gt=0)] = 5.0
    shutdown: NonNeg = 5.0


class Distribution(_Model):
    policy: Literal["local_only", "cluster_wide", "explicit_nodes"] = "cluster_wide"
    nodes: tuple[str, ...] = ()  # for explicit_nodes
    placement: Literal["round_robin", "random", "least_loaded", "topology_aware"] = "round_robin"
    spread: str | None = None  # a node label such as "zone"


class StateEntry(_Model):
    name: str
    kind: Literal["crdt", "gossip_cache", "consensus"]
    crdt: Literal["g_counter", "pn_counter", "or_set", "lww_register", "mv_register", "or_map"] | None = None
    ttl: NonNeg | None = None  # gossip_cache


class Checkpoint(_Model):
    every: Annotated[float, Field(gt=0)]
    url: str  # sqlite:///path or file:///path


class State(_Model):
    entries: tuple[StateEntry, ...] = ()
    checkpoint: Checkpoint | None = None


class Partition(_Model):
    resolver: Literal["keep_majority", "static_quorum", "keep_oldest", "down_all"] = "keep_majority"
    quorum: Positive | None = None  # static_quorum(q)
    minority: Literal["degraded", "read_only", "halt"] = "degraded"
    conflicts: Literal["crdt_merge", "last_write_wins"] = "crdt_merge"


class ScalingRule(_Model):
    metric: str  # mailbox_depth | idle | cpu | lag | ...
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    threshold: float
    window: NonNeg = 0.0  # seconds the condition must hold
    action: Literal["add", "remove"]
    amount: Positive = 1


class Predictor(_Model):
    kind: Literal["holt", "linear", "none"] = "none"
    horizon: NonNeg = 0.0
    alpha: Annotated[float, Field(gt=0, le=1)] = 0.5
    beta: Annotated[float, Field(gt=0, le=1)] = 0.3


class Scaling(_Model):
    min_workers: Annotated[int, Field(ge=0)]
    max_workers: Positive
    rules: tuple[ScalingRule, ...] = ()
    predict: Predictor = Field(default_factory=Predictor)


class Backpressure(_Model):
    mailbox: Positive = 1000
    overflow: Literal["block", "drop_oldest", "reject"] = "block"


class SpawnRule(_Model):
    """``allow spawn from zone "a"`` -> label="zone", value="a"; ``from node n1`` -> label="node"."""

    label: str
    value: str


class Ecosystem(_Model):
    name: str
    cluster: str | None
    coordinator: ComponentRef
    workers: ComponentRef
    worker_count: Annotated[int, Field(ge=0)] = 1
    supervision: Supervision = Field(default_factory=Supervision)
    isolation: Literal["task", "process"] = "task"
    distribution: Distribution = Field(default_factory=Distribution)
    channels: dict[str, str] = Field(default_factory=dict)  # local alias -> channel name
    state: State = Field(default_factory=State)
    partition: Partition = Field(default_factory=Partition)
    scaling: Scaling | None = None
    backpressure: Backpressure = Field(default_factory=Backpressure)
    register_as: str | None = None
    requires: tuple[str, ...] = ()
    allow_spawn_from: tuple[SpawnRule, ...] = ()


# ---------------------------------------------------------------------- plan


class Plan(_Model):
    plan_version: Literal[1] = PLAN_VERSION
    sources: tuple[str, ...] = ()  # files compiled into this plan (root first)
    clusters: tuple[Cluster, ...] = ()
    messages: tuple[MessageType, ...] = ()
    channels: tuple[Channel, ...] = ()
    ecosystems: tuple[Ecosystem, ...] = ()

    def cluster(self, name: str | None = None) -> Cluster:
        if name is None:
            if len(self.clusters) != 1:
                raise KeyError("plan has no single default cluster")
            return self.clusters[0]
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(name)

    def ecosystem(self, name: str) -> Ecosystem:
        for e in self.ecosystems:
            if e.name == name:
                return e
        raise KeyError(name)

    def channel(self, name: str) -> Channel:
        for c in self.channels:
            if c.name == name:
                return c
        raise KeyError(name)

    def message(self, name: str) -> MessageType:
        for m in self.messages:
            if m.name == name:
                return m
        raise KeyError(name)
