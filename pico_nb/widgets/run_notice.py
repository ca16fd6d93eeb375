"""The notice that a run the viewer owns has ended: a browser notification and a message in
the page (JupyterLab's own notification when the page is in JupyterLab), once per run however
many views report it."""

from __future__ import annotations

from pico_nb.schemas import RunRecord
from pico_nb.text import esc

# A run the viewer owns ended while they watched: a browser notification (asked for once) and
# a message in the page, which also covers a refused or unsupported Notification API. In
# JupyterLab the message is JupyterLab's own notification (its documented `apputils:notify`
# command, reachable when the server exposes the app, as pico-nb's Jupyter config does): it
# stays in Lab's notification centre; elsewhere it is a toast of our own.
NOTIFY_JS = (
    "const seen=window.picoNotified=window.picoNotified||new Set();"
    "if(seen.has(this.dataset.run))return;seen.add(this.dataset.run);"  # panel and watcher
    "const t=this.dataset.title,b=this.dataset.body,app=window.jupyterapp;"
    "if(app&&app.commands.hasCommand('apputils:notify')){"
    "app.commands.execute('apputils:notify',{message:t+' · '+b,type:this.dataset.kind,"
    "options:{autoClose:false}})}else{"
    "const d=document.createElement('div');d.className='pico-toast';"
    "d.setAttribute('role','status');d.textContent=t+' · '+b;"
    "document.body.appendChild(d);setTimeout(()=>d.remove(),15000)}"
    "if(!('Notification' in window))return;"
    "const show=()=>new Notification(t,{body:b,tag:'pico-run-'+this.dataset.run});"
    "if(Notification.permission==='granted')show();"
    "else if(Notification.permission!=='denied')"
    "Notification.requestPermission().then(p=>{if(p==='granted')show()})"
)

NOTICE_KINDS = {"completed": "success", "failed": "error", "cancelled": "warning"}
"""JupyterLab's notification types by how a run ended."""


def ended_notice(run: RunRecord, experiment_name: str) -> str:
    """HTML that, once in the page, shows a toast and a browser notification that a run ended
    (once per run, however many views report it)."""
    title = f"Run {run.number} of “{experiment_name}” {run.status}"
    kind = NOTICE_KINDS.get(run.status, "info")
    return (
        f'<img alt="" src="data:," data-run="{run.id}" data-title="{esc(title)}" '
        f'data-body="{esc(run.reason or run.status)}" data-kind="{kind}" '
        f'onerror="{esc(NOTIFY_JS)}">'
    )
