"""Who owns what: a mailbox and its tickets belong to a team; here each agent is their own team
(a real helpdesk reads the team from the agent's profile)."""

from django.http import HttpRequest


def team_of(request: HttpRequest) -> str | None:
    """The team of the signed-in agent (mailparity's connect OWNER hook), or None."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return f"team-{user.get_username()}"
