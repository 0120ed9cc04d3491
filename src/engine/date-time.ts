/** ISO 8601 / RFC 3339 date-time with an explicit offset: `2026-11-21T10:00:00Z`, `…T10:00+01:00`. */
const ISO = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:Z|([+-])(\d{2}):(\d{2}))$/;

function daysIn(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/**
 * Parses an ISO 8601 date-time with a time zone, refusing what `new Date()` would quietly
 * "fix": `2030-02-31` (not March 3rd), hour 24, minute 60, year 0000, offsets beyond ±23:59.
 * Returns the date, or why the text is not one.
 */
export function parseIsoDateTime(text: string): { date: Date } | { error: string } {
  const m = ISO.exec(text);
  if (!m) return { error: 'must be an ISO 8601 date-time with a time zone, e.g. 2026-11-21T10:00:00Z' };
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6] ?? '0'].map(Number) as number[];
  if (year! < 1) return { error: 'has year 0000; years start at 0001' };
  if (month! < 1 || month! > 12) return { error: `has month ${m[2]}; months are 01 to 12` };
  if (day! < 1 || day! > daysIn(year!, month!)) return { error: `is not a real date: ${m[1]}-${m[2]} has no day ${m[3]}` };
  if (hour! > 23 || minute! > 59 || second! > 59) return { error: 'is not a real time of day (00:00:00 to 23:59:59)' };
  if (m[7] && (Number(m[8]) > 23 || Number(m[9]) > 59)) return { error: 'has a time zone offset beyond ±23:59' };
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) return { error: 'is not a real date' };
  return { date };
}
