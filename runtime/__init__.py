"""The eco runtime: processes, mailboxes, links, monitors, supervision, components.

The curated public API of the local kernel; the node, wire and simulator
modules are imported from their own modules.
"""

from .component import Context, Coordinator, NodeDown, Worker, WorkerStarted, load_component
from .errors import (
    CallFailed,
    CallTimeout,
    ComponentLoadError,
    EcoRuntimeError,
    MailboxFull,
    NameTaken,
    NoProc,
    NotConnected,
    NotInProcess,
    ReceiveTimeout,
    SupervisorError,
)
from .kernel import Kernel, RemoteRouter, current_process
from .mailbox import Mailbox
from .pid import PID, Ref
from .signals import (
    KILLED,
    NOCONNECTION,
    NOPROC,
    NORMAL,
    SHUTDOWN,
    CallReply,
    CallRequest,
    Down,
    Exited,
    ProcessExit,
    Reason,
)
from .supervisor import (
    ChildInfo,
    Supervisor,
    delete_child,
    restart_child,
    start_child,
    start_supervisor,
    terminate_child,
    which_children,
)
from .supervisor_core import ChildSpec, Escalate, StartChildren, StopChildren, SupervisorCore

__all__ = [
    # kernel and processes
    "Kernel", "RemoteRouter", "Context", "current_process", "Mailbox", "PID", "Ref",
    # exit reasons and system messages
    "Reason", "NORMAL", "SHUTDOWN", "KILLED", "NOPROC", "NOCONNECTION",
    "Down", "Exited", "CallRequest", "CallReply", "ProcessExit",
    # components
    "Worker", "Coordinator", "WorkerStarted", "NodeDown", "load_component",
    # supervision
    "Supervisor", "ChildSpec", "ChildInfo", "start_supervisor", "start_child", "terminate_child",
    "restart_child", "delete_child", "which_children",
    "SupervisorCore", "StartChildren", "StopChildren", "Escalate",
    # errors
    "EcoRuntimeError", "CallTimeout", "CallFailed", "NoProc", "MailboxFull", "NameTaken",
    "NotInProcess", "ReceiveTimeout", "NotConnected", "SupervisorError", "ComponentLoadError",
]
