import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';

/**
 * Shared pieces of the admin forms: a labelled field whose error (from a UserError naming it)
 * is shown right under it and announced with it (aria-invalid, aria-describedby), and a
 * two-step "are you sure?" button for changes that cannot be undone.
 */

export interface FieldError {
  code: string;
  message: string;
  field?: string[] | null;
}

/**
 * Splits UserErrors by the input field they name (`["input", "condition"]` → `condition`;
 * `["input", "escalateTo", "1"]` → `escalateTo`); `general` holds the rest.
 */
export function errorsByField(errors: readonly FieldError[]): { byField: Record<string, string>; general: string[] } {
  const byField: Record<string, string> = {};
  const general: string[] = [];
  for (const e of errors) {
    const path = e.field ?? [];
    const name = path[0] === 'input' ? path[1] : path[0];
    if (name) byField[name] = byField[name] ? `${byField[name]} ${e.message}` : e.message;
    else general.push(e.message);
  }
  return { byField, general };
}

/**
 * A label, one control (the child, which must carry `id={id}` and spread `describedBy(...)`),
 * an optional hint and the field's error.
 */
export function Field(props: { id: string; label: string; hint?: ComponentChildren; error?: string | undefined; check?: boolean; children: ComponentChildren }) {
  return (
    <div class={`field${props.check ? ' check' : ''}${props.error ? ' invalid' : ''}`}>
      <label for={props.id}>{props.label}</label>
      {props.children}
      {props.hint && (
        <small id={`${props.id}-hint`} class="hint">
          {props.hint}
        </small>
      )}
      {props.error && (
        <p id={`${props.id}-error`} class="error field-error">
          {props.error}
        </p>
      )}
    </div>
  );
}

/** The aria attributes a control inside {@link Field} needs. */
export function describedBy(id: string, hint: boolean, error: string | undefined) {
  const ids = [hint ? `${id}-hint` : '', error ? `${id}-error` : ''].filter(Boolean).join(' ');
  return { 'aria-describedby': ids || undefined, 'aria-invalid': error ? true : undefined };
}

/** Errors that name no field, or a request that failed outright. */
export function FormErrors({ messages }: { messages: string[] }) {
  if (!messages.length) return null;
  return (
    <div class="error" role="alert">
      {messages.map((m) => (
        <p>{m}</p>
      ))}
    </div>
  );
}

/**
 * A danger button that asks first: "Revoke" shows what will happen and "Confirm revoke" /
 * "Cancel". Focus moves to the confirmation so a keyboard user lands on it.
 */
export function ConfirmButton(props: { label: string; question: string; busy?: boolean; onConfirm: () => void }) {
  const [asking, setAsking] = useState(false);
  const confirm = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (asking) confirm.current?.focus();
  }, [asking]);
  if (!asking)
    return (
      <button type="button" class="danger" disabled={props.busy} onClick={() => setAsking(true)}>
        {props.label}
      </button>
    );
  return (
    <span class="confirm" role="group" aria-label={props.question}>
      <span class="confirm-question">{props.question}</span>
      <button
        type="button"
        class="danger"
        disabled={props.busy}
        ref={confirm}
        onClick={() => {
          setAsking(false);
          props.onConfirm();
        }}
      >
        Confirm {props.label.toLowerCase()}
      </button>
      <button type="button" class="secondary" onClick={() => setAsking(false)}>
        Cancel
      </button>
    </span>
  );
}

/**
 * For an editor that opens above a long list: on mount, scrolls its heading into view and moves
 * focus there (tabIndex -1), so keyboard and screen-reader users land in the form they opened.
 */
export function useFocusHeading() {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    ref.current?.scrollIntoView({ block: 'start' });
    ref.current?.focus({ preventScroll: true });
  }, []);
  return ref;
}

/**
 * An editor's round trip to the server: the errors under its fields, the errors above it, and
 * whether a request is in flight. `submit` clears the errors, sends `run`, and on an answer with
 * errors (or without the result `result` picks out) shows them and focuses the first field at
 * fault (`focus`, by default the first marked invalid in `form`); otherwise hands the result to
 * `done`. `missing`: what to say when the answer has neither errors nor a result. A request that
 * fails (network, HTTP) is shown above the form.
 */
export function useSubmit() {
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});
  const [general, setGeneral] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);
  async function submit<P extends { errors: readonly FieldError[] }, R>(
    form: HTMLFormElement | null,
    run: () => Promise<P>,
    result: (payload: P) => R | null | undefined,
    done: (value: R) => void,
    options: { missing?: string; focus?: (byField: Record<string, string>) => void } = {},
  ): Promise<void> {
    setBusy(true);
    setFieldErrors({});
    setGeneral([]);
    try {
      const payload = await run();
      const value = result(payload);
      if (payload.errors.length || value === null || value === undefined) {
        const { byField, general: rest } = errorsByField(payload.errors);
        setFieldErrors(byField);
        if (options.focus) options.focus(byField);
        else focusFirstInvalid(form);
        setGeneral(rest.length || Object.keys(byField).length || !options.missing ? rest : [options.missing]);
      } else {
        done(value);
      }
    } catch (err) {
      setGeneral([(err as Error).message]);
    } finally {
      setBusy(false);
    }
  }
  return { fieldErrors, setFieldErrors, general, setGeneral, busy, submit };
}

/** After a refusal has rendered: focus the first field marked invalid in `form`, so a keyboard user lands on what to fix. */
export function focusFirstInvalid(form: HTMLFormElement | null) {
  requestAnimationFrame(() => form?.querySelector<HTMLElement>('[aria-invalid="true"]')?.focus());
}

/** Parses a JSON text area: the value, or a message for people saying why not. */
export function parseJson(text: string, what: string): { ok: true; value: unknown } | { ok: false; error: string } {
  if (!text.trim()) return { ok: true, value: undefined };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (e) {
    return { ok: false, error: `${what} is not valid JSON: ${(e as Error).message}` };
  }
}

/** Known users of the space (from its API keys: there is no user list query), for pickers. */
export function knownUsers(keys: readonly { userId?: string | null; userHandle?: string | null }[]): { id: string; handle: string }[] {
  const seen = new Map<string, string>();
  for (const k of keys) if (k.userId && !seen.has(k.userId)) seen.set(k.userId, k.userHandle ?? k.userId);
  return [...seen].map(([id, handle]) => ({ id, handle })).sort((a, b) => a.handle.localeCompare(b.handle));
}

/** A page's last error (announced at once) and last success message (announced politely). */
export function Notices({ error, saved }: { error: string | null; saved: string | null }) {
  return (
    <>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {saved && (
        <p class="ok" role="status">
          {saved}
        </p>
      )}
    </>
  );
}

/** An editor's "Save …" (submits its form) and "Cancel" buttons. */
export function SaveCancel({ label, busy, onCancel }: { label: string; busy: boolean; onCancel: () => void }) {
  return (
    <div class="buttons">
      <button type="submit" disabled={busy}>
        {label}
      </button>
      <button type="button" class="secondary" onClick={onCancel}>
        Cancel
      </button>
    </div>
  );
}
