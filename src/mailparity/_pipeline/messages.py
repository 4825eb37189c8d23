"""Message jobs: deliver one message (dedupe, fetch, publish, mark processed), the minimal
fallback event and its retry job, and the retried "mark processed" of a published message."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .. import logs, telemetry
from ..adapter import EmailProviderAdapter
from ..attachments import save_attachments
from ..errors import AuthError, ConfigurationError, NotFoundError, PermanentMessageError
from ..models import EmailBody, EmailMessage, InboundEmailReceived, Job, event_id_for
from ..protocols import AnyProviderConfig
from .base import (
    _DEAD,
    _FAILURES,
    _MARK_FAILURES,
    _MARK_PENDING,
    MessageResult,
    ProcessorBase,
    _describe,
    _parse_time,
    log,
)

__all__ = ["MessageJobs"]


class MessageJobs(ProcessorBase):
    """The ``message`` / ``message_retry`` jobs and :meth:`process_message`."""

    # ------------------------------------------------------------------ messages

    def _run_message_job(
        self, job: Job, provider: AnyProviderConfig, adapter: EmailProviderAdapter[Any]
    ) -> None:
        message_id = job.payload.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            log.error("job %s: payload has no message_id; buried", job.id)
            self.store.bury_job(job.id, error="payload has no message_id")
            return
        if job.payload.get("mark_only"):
            self._run_mark_job(job, provider, adapter, message_id)
            return
        result = self.process_message(
            adapter,
            provider,
            message_id,
            received_hint=_parse_time(job.payload.get("received_hint")),
            retrying_minimal=job.kind == "message_retry",
        )
        self._progress_done(provider.provider_id, message_id, result)
        if result.status == "retry":
            delay = result.retry_in if result.retry_in is not None else self._backoff(job.attempts)
            self._retry(job, delay, result.error or "retry")
        elif result.status == "dead":
            self.store.bury_job(job.id, error=result.error or "given up")
        else:
            self.store.complete_job(job.id)

    def _progress_found(self, provider_id: str, count: int) -> None:
        if self.progress is not None:
            try:
                self.progress.messages_found(provider_id, count)
            except Exception:  # an observer must not break the pipeline
                log.exception("progress observer failed")

    def _progress_done(self, provider_id: str, message_id: str, result: MessageResult) -> None:
        if self.progress is not None:
            try:
                self.progress.message_done(provider_id, message_id, result)
            except Exception:  # an observer must not break the pipeline
                log.exception("progress observer failed")

    @logs.binds_message_id
    def process_message(
        self,
        adapter: EmailProviderAdapter[Any],
        provider: AnyProviderConfig,
        message_id: str,
        *,
        received_hint: datetime | None = None,
        retrying_minimal: bool = False,
        prefetched: EmailMessage | BaseException | None = None,
    ) -> MessageResult:
        """Deliver one message: dedupe, fetch, publish, mark processed (see the module docstring).

        ``prefetched`` is the outcome of a batched fetch of this message (the message, or the
        error its own batch member got); it replaces the single fetch and is handled exactly
        like what that fetch would have returned or raised.

        ``received_hint`` is the minimal event's ``received_at`` if it comes to that (else now).
        ``retrying_minimal`` is set by the ``message_retry`` job, which owns a message whose
        minimal event went out; other callers leave such a message to it.

        Raises AuthExpiredError / CredentialsMissingError (the mailbox needs consent) and store
        errors; every other failure is a :class:`MessageResult`. A NotFoundError (deleted before
        it could be fetched) publishes nothing: there is no message left to describe, and a
        minimal event would announce mail that nobody can read. It is reported and done.
        """
        pid = provider.provider_id
        if self.store.get_meta(pid, _DEAD + message_id) is not None:
            return MessageResult("skipped")
        id_key = f"id:{message_id}"
        if not retrying_minimal and self.store.published_state(pid, id_key) == "minimal":
            self._ensure_retry_job(provider, message_id, received_hint)
            return MessageResult("minimal", event_id=event_id_for(pid, message_id, complete=False))
        owner = self._owner()
        now = self.clock()
        claim = self.store.claim_keys(pid, [id_key], owner, self._lease(now), now)
        if claim == "published":
            return self._already_published(adapter, provider, message_id)
        if claim == "busy":
            return MessageResult("retry", retry_in=self.backoff_base, error="message is busy")
        held = [id_key]
        settled = False
        try:
            try:
                if isinstance(prefetched, BaseException):
                    raise prefetched
                message = (
                    prefetched
                    if prefetched is not None
                    else self._fetch(adapter, provider, message_id)
                )
            except (AuthError, ConfigurationError):
                raise
            except NotFoundError as exc:
                log.info("provider %s: message %s is gone; no event", pid, message_id)
                self.store.set_meta(pid, _FAILURES + message_id, None)
                self._report(pid, message_id, exc)
                return MessageResult("deleted", error=_describe(exc))
            except PermanentMessageError as exc:
                return self._give_up(pid, message_id, exc)
            except Exception as exc:  # transient or unknown: counted, retried
                result = self._fetch_failed(provider, message_id, exc, received_hint, owner)
                settled = result.status == "minimal"
                return result

            if message.message_id:
                mid_key = f"mid:{message.message_id}"
                now = self.clock()
                claim = self.store.claim_keys(pid, [mid_key], owner, self._lease(now), now)
                if claim == "busy":
                    return MessageResult(
                        "retry", retry_in=self.backoff_base, error="Message-ID busy"
                    )
                if claim == "published":
                    # The same email under another provider id (re-uploaded, copied): one event.
                    log.info(
                        "provider %s: message %s repeats Message-ID %s; no second event",
                        pid, message_id, message.message_id,
                    )
                    self.store.mark_published(
                        pid, held, complete=True, event_id=event_id_for(pid, message_id),
                        at=self.clock(),
                    )
                    settled = True
                    self.store.set_meta(pid, _FAILURES + message_id, None)
                    self._mark_processed(adapter, provider, message_id)
                    telemetry.duplicate(provider.provider)
                    return MessageResult("duplicate")
                held.append(mid_key)

            if self.attachment_store is not None:
                try:
                    message = save_attachments(
                        adapter, message, self.attachment_store,
                        max_bytes=self.attachment_max_bytes,
                    )
                except (AuthError, ConfigurationError):
                    raise
                except Exception as exc:  # the host's store or the download: retried
                    log.warning("provider %s: saving the attachments of %s failed: %s",
                                pid, message_id, _describe(exc))
                    # A Retry-After is honoured; otherwise the job's own backoff.
                    wait = self._error_delay(exc, 0) if getattr(exc, "retry_after", None) else None
                    return MessageResult(
                        "retry", retry_in=wait, error=f"attachment store: {_describe(exc)}"
                    )
            # A fetched message is complete already (the copy is for one that is not).
            event = InboundEmailReceived.for_message(
                message if message.complete else message.model_copy(update={"complete": True}),
                occurred_at=self.clock(),
                limits=self.event_limits,
            )
            try:
                telemetry.publish(self.publisher, event, provider.provider)
            except Exception as exc:  # the host's bus: retried, never a fallback
                log.warning(
                    "provider %s: publishing %s failed: %s", pid, message_id, _describe(exc)
                )
                return MessageResult("retry", error=f"publish failed: {_describe(exc)}")
            self.store.mark_published(
                pid, held, complete=True, event_id=event.event_id, at=self.clock()
            )
            settled = True
            self.store.set_meta(pid, _FAILURES + message_id, None)
            self._mark_processed(adapter, provider, message_id)
            return MessageResult("published", event_id=event.event_id)
        finally:
            if not settled:
                self.store.release_keys(pid, held, owner)

    def _fetch(
        self, adapter: EmailProviderAdapter[Any], provider: AnyProviderConfig, message_id: str
    ) -> EmailMessage:
        with telemetry.fetching(provider.provider, message_id):
            return adapter.get_message_details(message_id)

    def _already_published(
        self, adapter: EmailProviderAdapter[Any], provider: AnyProviderConfig, message_id: str
    ) -> MessageResult:
        # A duplicate job is the moment to retry a mark that failed earlier (cheap, no refetch).
        if self.store.get_meta(provider.provider_id, _MARK_PENDING + message_id):
            self._mark_processed(adapter, provider, message_id)
        telemetry.duplicate(provider.provider)
        return MessageResult("duplicate")

    def _fetch_failed(
        self,
        provider: AnyProviderConfig,
        message_id: str,
        error: BaseException,
        received_hint: datetime | None,
        owner: str,
    ) -> MessageResult:
        pid = provider.provider_id
        raw = self.store.get_meta(pid, _FAILURES + message_id)
        failures = (int(raw) if raw and raw.isdigit() else 0) + 1
        self.store.set_meta(pid, _FAILURES + message_id, str(failures))
        if failures > self.retry_cap:
            return self._give_up(pid, message_id, error, reason="retry cap exceeded")
        log.warning(
            "provider %s: fetching %s failed (%d/%d): %s",
            pid, message_id, failures, self.max_attempts, _describe(error),
        )
        id_key = f"id:{message_id}"
        if failures >= self.max_attempts and self.store.published_state(pid, id_key) is None:
            return self._publish_minimal(provider, message_id, received_hint)
        delay = self._error_delay(error, failures - 1)
        return MessageResult("retry", retry_in=delay, error=_describe(error))

    def _publish_minimal(
        self, provider: AnyProviderConfig, message_id: str, received_hint: datetime | None
    ) -> MessageResult:
        """The seed's fallback: tell the host mail arrived even though it cannot be read yet."""
        pid = provider.provider_id
        message = EmailMessage(
            id=message_id,
            provider=provider.provider,
            provider_id=pid,
            tenant=provider.tenant,
            mailbox=provider.mailbox,
            received_at=received_hint or self.clock(),
            # from_ defaults to EmailAddress(email=""), the seed's empty sender.
            body=EmailBody(text=""),
            complete=False,
        )
        event = InboundEmailReceived.for_message(
            message, occurred_at=self.clock(), limits=self.event_limits
        )
        try:
            telemetry.publish(self.publisher, event, provider.provider)
        except Exception as exc:  # retried like any publish failure
            log.warning("provider %s: publishing minimal %s failed: %s", pid, message_id,
                        _describe(exc))
            return MessageResult("retry", error=f"publish failed: {_describe(exc)}")
        self.store.mark_published(
            pid, [f"id:{message_id}"], complete=False, event_id=event.event_id, at=self.clock()
        )
        log.warning("provider %s: message %s published minimal; retrying for details",
                    pid, message_id)
        self._ensure_retry_job(provider, message_id, received_hint)
        return MessageResult("minimal", event_id=event.event_id)

    def _ensure_retry_job(
        self, provider: AnyProviderConfig, message_id: str, received_hint: datetime | None
    ) -> None:
        payload: dict[str, Any] = {"message_id": message_id}
        if received_hint is not None:
            payload["received_hint"] = received_hint.isoformat()
        self._enqueue(
            Job(
                kind="message_retry",
                provider_id=provider.provider_id,
                payload=payload,
                unique_key=f"message-retry:{provider.provider_id}:{message_id}",
                available_at=self.clock()
                + timedelta(seconds=self._backoff(self.max_attempts)),
            )
        )

    def _give_up(
        self, provider_id: str, message_id: str, error: BaseException, *, reason: str = ""
    ) -> MessageResult:
        text = f"{reason}: {_describe(error)}" if reason else _describe(error)
        log.error("provider %s: giving up on message %s (%s)", provider_id, message_id, text)
        self.store.set_meta(provider_id, _DEAD + message_id, text[:200])
        self.store.set_meta(provider_id, _FAILURES + message_id, None)
        self._report(provider_id, message_id, error)
        return MessageResult("dead", error=text)

    def _mark_processed(
        self, adapter: EmailProviderAdapter[Any], provider: AnyProviderConfig, message_id: str
    ) -> None:
        """Apply the processed strategy; a failure is remembered and retried by its own job."""
        pid = provider.provider_id
        try:
            adapter.mark_message_processed(message_id)
        except Exception as exc:  # the event is out; never republish for this
            log.warning("provider %s: marking %s processed failed: %s", pid, message_id,
                        _describe(exc))
            self.store.set_meta(pid, _MARK_PENDING + message_id, "1")
            self._enqueue(
                Job(
                    kind="message_retry",
                    provider_id=pid,
                    payload={"message_id": message_id, "mark_only": True},
                    unique_key=f"mark:{pid}:{message_id}",
                    available_at=self.clock() + timedelta(seconds=self._error_delay(exc, 0)),
                )
            )
            return
        self.store.set_meta(pid, _MARK_PENDING + message_id, None)
        self.store.set_meta(pid, _MARK_FAILURES + message_id, None)

    def _run_mark_job(
        self,
        job: Job,
        provider: AnyProviderConfig,
        adapter: EmailProviderAdapter[Any],
        message_id: str,
    ) -> None:
        pid = provider.provider_id
        if not self.store.get_meta(pid, _MARK_PENDING + message_id):
            self.store.complete_job(job.id)
            return
        try:
            adapter.mark_message_processed(message_id)
        except AuthError:
            raise
        except NotFoundError:
            log.info("provider %s: message %s gone before it was marked", pid, message_id)
        except Exception as exc:
            raw = self.store.get_meta(pid, _MARK_FAILURES + message_id)
            failures = (int(raw) if raw and raw.isdigit() else 0) + 1
            if failures <= self.retry_cap:
                self.store.set_meta(pid, _MARK_FAILURES + message_id, str(failures))
                self._retry(job, self._error_delay(exc, failures), _describe(exc))
                return
            log.error("provider %s: giving up marking %s processed: %s", pid, message_id,
                      _describe(exc))
            self._report(pid, message_id, exc)
            self.store.set_meta(pid, _MARK_PENDING + message_id, None)
            self.store.set_meta(pid, _MARK_FAILURES + message_id, None)
            self.store.bury_job(job.id, error=_describe(exc))
            return
        self.store.set_meta(pid, _MARK_PENDING + message_id, None)
        self.store.set_meta(pid, _MARK_FAILURES + message_id, None)
        self.store.complete_job(job.id)
