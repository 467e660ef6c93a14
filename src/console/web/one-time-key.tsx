import { useEffect, useRef, useState } from 'preact/hooks';
import { oldKeyFate } from './keys.ts';

/** A key as the API answers it once: `POST /v1/admin/keys`, or `…/rotate` with `rotatedFrom`. */
export interface NewKeyShown {
  id: string;
  key: string;
  name: string;
  scopes: string[];
  services: string[];
  rateLimitPerMinute: number | null;
  rotatedFrom?: { id: string; expiresAt: string | null };
}

/**
 * The secret of a key just created or rotated, shown this once: in a read-only field to copy
 * (a button, or select and copy where the browser allows no clipboard), held in memory only,
 * until dismissed.
 */
export function OneTimeKey({ shown, onDone }: { shown: NewKeyShown; onDone(): void }) {
  const heading = useRef<HTMLHeadingElement>(null);
  const field = useRef<HTMLInputElement>(null);
  const [copied, setCopied] = useState<string | undefined>();
  // Read once, when shown: the sentence says how long from now the old key keeps working.
  const [shownAt] = useState(() => Date.now());
  useEffect(() => {
    setCopied(undefined);
    heading.current?.focus();
  }, [shown.key]);

  const copy = async () => {
    try {
      await navigator.clipboard.writeText(shown.key);
      setCopied('Copied to the clipboard.');
    } catch {
      // No clipboard outside a secure context (plain http to another host), or not allowed.
      field.current?.select();
      setCopied('This browser did not allow copying here: the key is selected, press Ctrl+C (⌘C on a Mac).');
    }
  };

  return (
    <section class="one-time-key panel" aria-labelledby="new-key-heading" data-testid="one-time-key">
      <h2 id="new-key-heading" ref={heading} tabindex={-1}>
        {shown.rotatedFrom ? 'Key rotated' : 'Key created'}: {shown.name}
      </h2>
      <p class="notice notice-warn">
        <strong>Copy the key now: you will not see it again.</strong> Tributary keeps only its hash. Put it in
        the client's secret store; if it is lost, rotate the key or create another.
      </p>
      <label for="new-key">The new key</label>
      <div class="copy-row">
        <input
          ref={field}
          id="new-key"
          class="secret"
          readOnly
          value={shown.key}
          autocomplete="off"
          spellcheck={false}
          onFocus={(e) => e.currentTarget.select()}
        />
        <button type="button" class="primary" onClick={copy}>
          Copy
        </button>
      </div>
      <p role="status" class="hint">
        {copied}
      </p>
      <p>
        Scopes {shown.scopes.join(', ')};{' '}
        {shown.services.length ? `services ${shown.services.join(', ')}` : 'every service'};{' '}
        {shown.rateLimitPerMinute === null
          ? 'the default rate limit'
          : `at most ${shown.rateLimitPerMinute.toLocaleString('en')} events per minute`}
        .
      </p>
      {shown.rotatedFrom && (
        <p data-testid="old-key-fate">{oldKeyFate(shown.rotatedFrom.expiresAt, shownAt)}</p>
      )}
      <button type="button" onClick={onDone}>
        Done: I have copied it
      </button>
    </section>
  );
}
