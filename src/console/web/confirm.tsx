import type { ComponentChildren, RefObject } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';

export interface Confirmation<T> {
  /** What is being confirmed (a subject, a key); undefined while nothing is asked. */
  asking: T | undefined;
  ask(value: T): void;
  /**
   * Closes the question and gives focus back to the button that asked it, unless told not to
   * (when what was confirmed moves focus somewhere else: a result to read).
   */
  close(refocus?: boolean): void;
  /** For the button that asks. */
  start: RefObject<HTMLButtonElement | null>;
}

/** The state of one {@link Confirm}: open with a value, closed with focus back where it was. */
export function useConfirmation<T>(): Confirmation<T> {
  const [asking, setAsking] = useState<T | undefined>();
  const start = useRef<HTMLButtonElement>(null);
  const refocus = useRef(false);
  useEffect(() => {
    // The asking button is rendered again only now, so focus moves once it exists.
    if (asking === undefined && refocus.current) start.current?.focus();
    refocus.current = false;
  }, [asking]);
  return {
    asking,
    ask: setAsking,
    close: (again = true) => {
      refocus.current = again;
      setAsking(undefined);
    },
    start,
  };
}

/**
 * A confirmation in place of the button that asked for it: the question, the confirming
 * button (focused, so Enter confirms and a screen reader reads it) and Cancel (Escape too).
 */
export function Confirm(props: {
  children: ComponentChildren;
  confirmLabel: string;
  busyLabel: string;
  busy: boolean;
  onConfirm(): void;
  onCancel(): void;
}) {
  const confirm = useRef<HTMLButtonElement>(null);
  useEffect(() => confirm.current?.focus(), []);
  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === 'Escape' && !props.busy) {
      e.preventDefault();
      props.onCancel();
    }
  };
  return (
    <fieldset class="confirm" onKeyDown={onKeyDown}>
      <legend class="visually-hidden">Confirm</legend>
      <div class="confirm-question">{props.children}</div>
      <button
        type="button"
        class="primary danger"
        ref={confirm}
        onClick={props.onConfirm}
        disabled={props.busy}
      >
        {props.busy ? props.busyLabel : props.confirmLabel}
      </button>
      <button type="button" onClick={props.onCancel} disabled={props.busy}>
        Cancel
      </button>
    </fieldset>
  );
}
