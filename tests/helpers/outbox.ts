import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

export interface OutboxMail {
  file: string;
  to: string;
  subject: string;
  /** The whole message with quoted-printable soft breaks and escapes undone. */
  text: string;
}

function decodeQuotedPrintable(raw: string): string {
  return raw.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** Every .eml in the outbox, oldest first. */
export async function readOutbox(dir: string): Promise<OutboxMail[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.eml')).sort();
  } catch {
    return [];
  }
  return Promise.all(
    names.map(async (name) => {
      const raw = await readFile(path.join(dir, name), 'utf8');
      const header = (h: string) => new RegExp(`^${h}: (.*)$`, 'mi').exec(raw)?.[1]?.trim() ?? '';
      return { file: name, to: header('To'), subject: header('Subject'), text: decodeQuotedPrintable(raw) };
    }),
  );
}

/** The approval link's token in a mail. */
export function approvalToken(mail: OutboxMail): string {
  const match = /\/approvals\/([A-Za-z0-9_-]{43})/.exec(mail.text);
  if (!match?.[1]) throw new Error(`no approval link in ${mail.file}`);
  return match[1];
}
