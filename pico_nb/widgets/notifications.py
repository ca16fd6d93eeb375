"""A member's own notification settings: e-mail and/or a webhook when a run of theirs ends."""

from __future__ import annotations

from typing import TYPE_CHECKING

import ipywidgets as w

from pico_nb.contract.errors import ValidationError
from pico_nb.text import esc
from pico_nb.widgets import default_lab
from pico_nb.widgets.fields import TextField
from pico_nb.widgets.style import MessageBar, guarded, heading, styled, stylesheet

if TYPE_CHECKING:
    from pico_nb.lab_api import LabAPI


class NotificationsView(w.VBox):
    """Opt in to e-mail and webhook notices; the webhook (it holds a token) is never shown back."""

    def __init__(self, lab: LabAPI | None = None) -> None:
        self.lab = lab or default_lab()
        wide = w.Layout(width="min(480px, 100%)")
        self.email = TextField("E-mail", w.Text(placeholder="you@example.org", layout=wide))
        self.webhook = TextField(
            "Webhook URL",
            w.Password(placeholder="https://hooks.slack.com/services/…", layout=wide),
        )
        self.current = styled(w.HTML(), "pico-muted")
        self.save_button = w.Button(description="Save", button_style="primary")
        self.save_button.on_click(lambda _: self.save())
        self.messages = MessageBar()
        super().__init__(
            [
                stylesheet(),
                heading("Notifications"),
                w.HTML(
                    '<div class="pico-muted">An open dashboard shows a notice when any run of '
                    "yours ends, and a JupyterLab run panel when its run does. To hear of them "
                    "away from the page too, by e-mail or in a chat channel (Slack, Mattermost, "
                    "Teams incoming webhook), fill in either field; empty it to stop.</div>"
                ),
                self.email,
                self.webhook,
                self.current,
                styled(w.HBox([self.save_button]), "pico-toolbar"),
                self.messages,
            ]
        )
        styled(self, "pico", "pico-notifications")
        self.refresh()

    @guarded
    def refresh(self) -> None:
        """Show what is set now; the webhook only as its site."""
        now = self.lab.notification_settings()
        self.email.box.value = now.email or ""
        self.email.box.disabled = not now.email_available and not now.email
        hook = f"webhook: {now.webhook}" if now.webhook else "no webhook"
        mail = "" if now.email_available else " · e-mail is off: this lab has no mail server"
        self.current.value = esc(hook + mail)

    @guarded
    def save(self) -> None:
        """Store both choices at once; a blank webhook box leaves the stored one alone."""
        self.email.error = self.webhook.error = ""
        try:
            self.lab.set_notifications(
                email=self.email.box.value, webhook=self.webhook.box.value or None
            )
        except ValidationError as exc:
            self.email.error = exc.errors.get("email", "")
            self.webhook.error = exc.errors.get("webhook", "")
            self.messages.error("Not saved: " + "; ".join(exc.errors))
            return
        self.webhook.box.value = ""
        self.refresh()
        self.messages.info("Saved your notification settings")
