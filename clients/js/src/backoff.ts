// Exponential backoff with full jitter: attempt n waits a uniformly random
// time between 0 and min(max, min * 2^n), so a crowd of clients that lost
// their node spreads its reconnects instead of arriving together.

export interface BackoffOptions {
  /** The first attempt's upper bound, ms. */
  min: number;
  /** No wait is longer, ms. */
  max: number;
}

export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const ceiling = Math.min(options.max, options.min * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}
