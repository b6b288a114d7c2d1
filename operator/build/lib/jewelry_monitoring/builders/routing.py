"""The AlertmanagerConfig of one JewelryMonitoring: its alerts, routed as its spec says.

Why it is built this way:

* Scoped to this resource's alerts: its route matches the label every alert of ours carries
  (``ALERT_OWNER_LABEL`` = the resource's name), and prometheus-operator adds a
  ``namespace`` matcher of its own, so two resources never route each other's alerts.
* "What gets what" is two tables: ``INTEGRATIONS`` says how each receiver integration of the
  spec becomes prometheus-operator's receiver config, ``ROUTE_MATCHERS`` which alert label
  each route field matches. Credentials are only ever Secret key references, passed on as
  such: prometheus-operator reads them, the operator never does.
* Warnings are muted while the matching critical fires (``routing.inhibition``): the page
  says it all, the ticket for the same thing is noise.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jewelry_monitoring.builders.common import Obj, Owner, metadata
from jewelry_monitoring.spec import (
    ALERT_OWNER_LABEL,
    RECEIVER_INTEGRATIONS,
    EmailReceiver,
    MSTeamsReceiver,
    PagerDutyReceiver,
    ReceiverSpec,
    RouteSpec,
    SecretKeyRef,
    SlackReceiver,
    WebhookReceiver,
)

ROUTING_COMPONENT = "alert-routing"


def _secret(ref: SecretKeyRef) -> Obj:
    return {"name": ref.name, "key": ref.key}


def _slack(settings: Any) -> Obj:
    assert isinstance(settings, SlackReceiver)
    return {"apiURL": _secret(settings.api_url), "channel": settings.channel}


def _email(settings: Any) -> Obj:
    assert isinstance(settings, EmailReceiver)
    return {
        "to": settings.to,
        "from": settings.from_,
        "smarthost": settings.smarthost,
        "authUsername": settings.auth_username,
        "authPassword": _secret(settings.auth_password) if settings.auth_password else None,
        "requireTLS": settings.require_tls,
    }


def _pagerduty(settings: Any) -> Obj:
    assert isinstance(settings, PagerDutyReceiver)
    return {"routingKey": _secret(settings.routing_key)}


def _webhook(settings: Any) -> Obj:
    assert isinstance(settings, WebhookReceiver)
    return {"urlSecret": _secret(settings.url)}


def _msteams(settings: Any) -> Obj:
    assert isinstance(settings, MSTeamsReceiver)
    return {"webhookURL": _secret(settings.webhook_url)}


@dataclass(frozen=True)
class Integration:
    """How one receiver integration of our spec becomes prometheus-operator's."""

    field: str  # the AlertmanagerConfig receiver's list of configs of this kind
    config: Callable[[Any], Obj]


INTEGRATIONS: dict[str, Integration] = {
    "slack": Integration("slackConfigs", _slack),
    "email": Integration("emailConfigs", _email),
    "pagerduty": Integration("pagerdutyConfigs", _pagerduty),
    "webhook": Integration("webhookConfigs", _webhook),
    # Teams Workflows (msteamsv2): the Office 365 connectors of msteamsConfigs are retired.
    "msteams": Integration("msteamsv2Configs", _msteams),
}
assert tuple(INTEGRATIONS) == RECEIVER_INTEGRATIONS

# Route field -> the alert label its values are matched against.
ROUTE_MATCHERS = {"severities": "severity", "alert_names": "alertname", "teams": "team"}


def _matcher(label: str, values: Sequence[str]) -> Obj:
    """``label`` equal to the one value, or matching any of several (an anchored regex)."""
    if len(values) == 1:
        return {"name": label, "value": values[0], "matchType": "="}
    return {
        "name": label,
        "value": "|".join(re.escape(value) for value in values),
        "matchType": "=~",
    }


def _receiver(receiver: ReceiverSpec) -> Obj:
    result: Obj = {"name": receiver.name}
    for name, integration in INTEGRATIONS.items():
        settings = getattr(receiver, name)
        if settings is not None:
            config = {k: v for k, v in integration.config(settings).items() if v is not None}
            result[integration.field] = [{**config, "sendResolved": receiver.send_resolved}]
    return result


def _route(route: RouteSpec) -> Obj:
    result: Obj = {
        "receiver": route.receiver,
        "matchers": [
            _matcher(label, getattr(route, field))
            for field, label in ROUTE_MATCHERS.items()
            if getattr(route, field)
        ],
        "continue": route.continue_,
        "groupBy": route.group_by,
        "groupWait": route.group_wait,
        "groupInterval": route.group_interval,
        "repeatInterval": route.repeat_interval,
    }
    return {key: value for key, value in result.items() if value is not None}


def _inhibit_rules(owner: Owner) -> list[Obj]:
    assert owner.spec.routing is not None
    inhibition = owner.spec.routing.inhibition
    if not inhibition.enabled:
        return []
    ours = {"name": ALERT_OWNER_LABEL, "value": owner.name, "matchType": "="}
    return [
        {
            "sourceMatch": [ours, {"name": "severity", "value": "critical", "matchType": "="}],
            "targetMatch": [ours, {"name": "severity", "value": "warning", "matchType": "="}],
            "equal": inhibition.equal,
        }
    ]


def alertmanager_config_objects(owner: Owner) -> list[Obj]:
    """The AlertmanagerConfig routing ``owner``'s alerts, if its spec asks for routing."""
    routing = owner.spec.routing
    if routing is None:
        return []
    return [
        {
            "apiVersion": "monitoring.coreos.com/v1alpha1",
            "kind": "AlertmanagerConfig",
            "metadata": metadata(
                owner, ROUTING_COMPONENT, labels=routing.alertmanager_config_labels
            ),
            "spec": {
                "route": {
                    "receiver": routing.receiver,
                    "matchers": [
                        {"name": ALERT_OWNER_LABEL, "value": owner.name, "matchType": "="}
                    ],
                    "groupBy": routing.group_by,
                    "groupWait": routing.group_wait,
                    "groupInterval": routing.group_interval,
                    "repeatInterval": routing.repeat_interval,
                    "routes": [_route(route) for route in routing.routes],
                },
                "receivers": [_receiver(receiver) for receiver in routing.receivers],
                "inhibitRules": _inhibit_rules(owner),
            },
        }
    ]
