"""Slack through the Airflow Slack provider (chat.postMessage on the `slack_default` connection)."""
from __future__ import annotations

_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))


def escape(value) -> str:
    """Slack's control sequences made inert: `<!channel>`, `<@U123>`, `<url|label>` show as typed, never ping."""
    text = "" if value is None else str(value)
    for raw, safe in _ESCAPES:
        text = text.replace(raw, safe)
    return text


def post(text: str, *, channel: str, conn_id: str = "slack_default") -> None:
    """Post text as is (escape what came from outside first). notify() directly: no Jinja rendering of the text."""
    from airflow.providers.slack.notifications.slack import SlackNotifier
    SlackNotifier(slack_conn_id=conn_id, text=text, channel=channel).notify({})
