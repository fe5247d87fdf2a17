"""The diagnostic codes emitted by the compiler core, with their short titles.

Numbering: ECO1xxx names, resolution and imports; ECO2xxx types and values;
ECO3xxx semantic policy checks; ECO4xxx warnings and notes about unused or
risky things.  A number is never reused for a different meaning: retire a code
by leaving it out of new checks, never by renumbering.
"""

from __future__ import annotations

# ---------------------------------------------------------------- ECO1xxx names
DUPLICATE_DECL = "ECO1001"
UNKNOWN_MESSAGE = "ECO1002"
UNKNOWN_CHANNEL = "ECO1003"
UNKNOWN_NODE = "ECO1004"
UNKNOWN_CLUSTER = "ECO1005"
AMBIGUOUS_CLUSTER = "ECO1006"
DUPLICATE_NODE = "ECO1007"
UNKNOWN_SERVICE = "ECO1008"
DUPLICATE_SERVICE = "ECO1009"
MODULE_NOT_FOUND = "ECO1010"
IMPORT_CYCLE = "ECO1011"
IMPORT_UNREADABLE = "ECO1012"
STD_NOT_IMPORTED = "ECO1013"
DUPLICATE_ALIAS = "ECO1014"
NOT_IMPORTED_HERE = "ECO1015"
DUPLICATE_ENTRY = "ECO1016"
COMPONENT_IMPORT_FAILED = "ECO1017"
COMPONENT_CLASS_MISSING = "ECO1018"
UNKNOWN_QUALIFIER = "ECO1019"

# --------------------------------------------------------------- ECO2xxx values
UNKNOWN_SETTING = "ECO2001"
DUPLICATE_SETTING = "ECO2002"
WRONG_TYPE = "ECO2003"
UNKNOWN_VALUE = "ECO2004"
OUT_OF_RANGE = "ECO2005"
UNKNOWN_UNIT = "ECO2006"
BAD_ADDRESS = "ECO2007"
MISSING_SETTING = "ECO2008"
BAD_TYPE_ARGS = "ECO2009"
BAD_DEFAULT = "ECO2010"
BAD_COMPONENT_REF = "ECO2011"
UNEXPECTED_VALUE = "ECO2012"
INLINE_SECRET = "ECO2014"
TYPE_TOO_DEEP = "ECO2015"

# ------------------------------------------------------------- ECO3xxx semantic
EXPLICIT_NODE_NOT_IN_CLUSTER = "ECO3001"
EXPLICIT_NODES_EMPTY = "ECO3002"
SPREAD_LABEL_MISSING = "ECO3003"
BAD_QUORUM = "ECO3004"
SCALING_BOUNDS = "ECO3005"
READ_ONLY_WITHOUT_STATE = "ECO3006"
CHECKPOINT_SCHEME = "ECO3007"
DUPLICATE_ADDRESS = "ECO3008"
COMPONENT_WRONG_BASE = "ECO3011"
SPAWN_SOURCE_UNKNOWN = "ECO3012"
SWIM_TIMEOUT = "ECO3015"

# ------------------------------------------------------------- ECO4xxx warnings
UNUSED_MESSAGE = "ECO4001"
UNUSED_CHANNEL = "ECO4002"
UNUSED_IMPORT = "ECO4003"
CONSENSUS_TOO_SMALL = "ECO4004"
CONSENSUS_EVEN = "ECO4005"
DUPLICATE_IMPORT = "ECO4006"
EXTERNAL_SERVICE = "ECO4007"
CHECKPOINT_NOTHING = "ECO4009"

TITLES: dict[str, str] = {
    DUPLICATE_DECL: "duplicate declaration",
    UNKNOWN_MESSAGE: "unknown message type",
    UNKNOWN_CHANNEL: "unknown channel",
    UNKNOWN_NODE: "unknown node",
    UNKNOWN_CLUSTER: "unknown cluster",
    AMBIGUOUS_CLUSTER: "ecosystem must name its cluster",
    DUPLICATE_NODE: "duplicate node name",
    UNKNOWN_SERVICE: "unknown service",
    DUPLICATE_SERVICE: "service registered twice",
    MODULE_NOT_FOUND: "imported module not found",
    IMPORT_CYCLE: "import cycle",
    IMPORT_UNREADABLE: "imported file cannot be read",
    STD_NOT_IMPORTED: "standard module not imported",
    DUPLICATE_ALIAS: "import alias used twice",
    NOT_IMPORTED_HERE: "name declared in a file that is not imported here",
    DUPLICATE_ENTRY: "duplicate entry",
    COMPONENT_IMPORT_FAILED: "component module cannot be imported",
    COMPONENT_CLASS_MISSING: "component class not found",
    UNKNOWN_QUALIFIER: "unknown name qualifier",
    UNKNOWN_SETTING: "unknown setting",
    DUPLICATE_SETTING: "setting given twice",
    WRONG_TYPE: "wrong value type",
    UNKNOWN_VALUE: "unknown value",
    OUT_OF_RANGE: "value out of range",
    UNKNOWN_UNIT: "unknown unit",
    BAD_ADDRESS: "invalid host:port address",
    MISSING_SETTING: "missing required setting",
    BAD_TYPE_ARGS: "wrong number of type arguments",
    BAD_DEFAULT: "default value does not match the field type",
    BAD_COMPONENT_REF: "component reference is not `module:Class`",
    UNEXPECTED_VALUE: "unexpected extra value",
    INLINE_SECRET: "secret written inline",
    TYPE_TOO_DEEP: "type nested too deeply",
    EXPLICIT_NODE_NOT_IN_CLUSTER: "explicit node is not in the cluster",
    EXPLICIT_NODES_EMPTY: "explicit_nodes without nodes",
    SPREAD_LABEL_MISSING: "spread label missing on nodes",
    BAD_QUORUM: "static quorum cannot prevent split brain",
    SCALING_BOUNDS: "scaling bounds exclude the worker count",
    READ_ONLY_WITHOUT_STATE: "read_only minority without state",
    CHECKPOINT_SCHEME: "unsupported checkpoint URL",
    DUPLICATE_ADDRESS: "two nodes share an address",
    COMPONENT_WRONG_BASE: "component has the wrong base class",
    SPAWN_SOURCE_UNKNOWN: "spawn rule matches no node",
    SWIM_TIMEOUT: "SWIM probe timeout not below the probe interval",
    UNUSED_MESSAGE: "unused message type",
    UNUSED_CHANNEL: "unused channel",
    UNUSED_IMPORT: "unused import",
    CONSENSUS_TOO_SMALL: "consensus without fault tolerance",
    CONSENSUS_EVEN: "consensus on an even number of nodes",
    DUPLICATE_IMPORT: "module imported twice",
    EXTERNAL_SERVICE: "required service not provided by this plan",
    CHECKPOINT_NOTHING: "checkpoint without state",
}
