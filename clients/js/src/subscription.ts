// A client's subscription to one channel: its own state, its publications
// in order and once each, and the gaps it could not fill.

import { Emitter } from "./emitter.js";
import { SwitchyardError } from "./errors.js";
import type { ClientInfo, HistoryResult, Publication, StreamPosition, SubscribeResult } from "./frames.js";

export type SubscriptionState = "subscribing" | "subscribed" | "unsubscribed";

/** Publications that could not be delivered: `from` (exclusive) to `to`. */
export interface Gap {
  channel: string;
  /** The last position delivered before the gap, if any. */
  from?: StreamPosition;
  /** Where the channel stands now. */
  to: StreamPosition;
  /** `unrecoverable`: history no longer holds them; `epoch`: the channel's history was reset. */
  reason: "unrecoverable" | "epoch";
}

export interface SubscriptionEvents {
  state: SubscriptionState;
  publication: Publication;
  gap: Gap;
  error: SwitchyardError;
  join: ClientInfo;
  leave: ClientInfo;
}

export interface SubscribeOptions {
  /** On channels with history, ask for what was missed while away (default true). */
  recover?: boolean;
  /** Start after this position instead of now (with `recover`). */
  since?: StreamPosition;
  /** A subscription token, for namespaces whose `subscribe` permission is `token`. */
  token?: string;
}

/** What a subscription needs from its client. */
export interface SubscriptionHost {
  history(channel: string, since: StreamPosition, limit: number): Promise<HistoryResult>;
  release(subscription: Subscription): void;
  acknowledge(): void;
}

export class Subscription extends Emitter<SubscriptionEvents> {
  readonly channel: string;
  #state: SubscriptionState = "subscribing";
  #host: SubscriptionHost;
  #options: SubscribeOptions;
  /** The last publication delivered (channels with history). */
  #position?: StreamPosition;
  /** The offset last acknowledged to the server. */
  #acked = 0;
  /** While a gap is being filled from history: what came after it. */
  #held?: Publication[];
  #waiters: { resolve: () => void; reject: (e: SwitchyardError) => void }[] = [];

  /** @internal */
  constructor(channel: string, options: SubscribeOptions, host: SubscriptionHost) {
    super();
    this.channel = channel;
    this.#options = options;
    this.#host = host;
    this.#position = options.since;
  }

  get state(): SubscriptionState {
    return this.#state;
  }

  /** The position of the last publication delivered, on channels with history. */
  get position(): StreamPosition | undefined {
    return this.#position;
  }

  /** Resolves once the server confirmed the subscription; rejects if it refused it. */
  ready(): Promise<void> {
    if (this.#state === "subscribed") return Promise.resolve();
    if (this.#state === "unsubscribed") {
      return Promise.reject(new SwitchyardError("closed", 0, `not subscribed to ${this.channel}`));
    }
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Leaves the channel; no more publications are delivered. */
  unsubscribe(): void {
    if (this.#state === "unsubscribed") return;
    this.#host.release(this);
    this.#setState("unsubscribed");
    this.#settle(new SwitchyardError("closed", 0, `unsubscribed from ${this.channel}`));
  }

  /** @internal What a subscribe command asks for now. */
  request(): { channel: string; recover?: boolean; epoch?: string; offset?: number; token?: string } {
    const request: { channel: string; recover?: boolean; epoch?: string; offset?: number; token?: string } = {
      channel: this.channel,
    };
    if (this.#options.token) request.token = this.#options.token;
    if (this.#options.recover !== false && this.#position) {
      request.recover = true;
      request.epoch = this.#position.epoch;
      request.offset = this.#position.offset;
    }
    return request;
  }

  /** @internal The connection is gone: subscribe again when it is back. */
  interrupted(): void {
    if (this.#state === "subscribed") this.#setState("subscribing");
  }

  /** @internal The server confirmed a subscribe (or restored it on resume). */
  subscribed(result: SubscribeResult | { epoch?: string; offset?: number; recovered?: boolean }): void {
    const asked = this.#position;
    const now =
      result.epoch !== undefined && result.offset !== undefined
        ? { epoch: result.epoch, offset: result.offset }
        : undefined;
    if (asked && now && result.recovered === false) {
      this.emit("gap", { channel: this.channel, from: asked, to: now, reason: "unrecoverable" });
      this.#position = now;
    } else if (!asked && now) {
      this.#position = now;
    }
    for (const publication of (result as SubscribeResult).publications ?? []) this.deliver(publication);
    if (this.#state !== "subscribed") this.#setState("subscribed");
    this.#settle();
  }

  /** @internal The server refused the subscribe. */
  refused(error: SwitchyardError): void {
    this.#host.release(this);
    this.#setState("unsubscribed");
    this.emit("error", error);
    this.#settle(error);
  }

  /** @internal A join or leave on this channel. */
  member(join: boolean, info: ClientInfo): void {
    if (this.#state !== "unsubscribed") this.emit(join ? "join" : "leave", info);
  }

  /**
   * @internal A publication for this channel: delivered once, in offset
   * order; a hole in the offsets is filled from history first.
   */
  deliver(publication: Publication): void {
    if (this.#state === "unsubscribed") return;
    if (this.#held) {
      this.#held.push(publication);
      return;
    }
    const { offset, epoch } = publication;
    const at = this.#position;
    if (offset === undefined || epoch === undefined || offset === 0) {
      this.emit("publication", publication);
      return;
    }
    if (at && epoch === at.epoch) {
      if (offset <= at.offset) return; // had it already
      if (offset > at.offset + 1) {
        this.#fill(at, publication);
        return;
      }
    } else if (at && at.offset > 0) {
      // History was lost and offsets started again: say so, then go on.
      this.emit("gap", { channel: this.channel, from: at, to: { epoch, offset }, reason: "epoch" });
    }
    this.#position = { epoch, offset };
    this.emit("publication", publication);
    this.#host.acknowledge();
  }

  /** @internal The offset to acknowledge, if it moved since the last ack. */
  unacked(): number | undefined {
    const offset = this.#position?.offset;
    if (offset === undefined || offset <= this.#acked || this.#state !== "subscribed") return undefined;
    return offset;
  }

  /** @internal The server has the ack. */
  acknowledged(offset: number): void {
    this.#acked = Math.max(this.#acked, offset);
  }

  #fill(from: StreamPosition, next: Publication): void {
    this.#held = [next];
    const epoch = next.epoch ?? "";
    const upTo = (next.offset ?? 1) - 1;
    const finish = (filled: Publication[]): void => {
      const held = this.#held ?? [];
      this.#held = undefined;
      for (const publication of filled) {
        const at = this.#position?.offset ?? 0;
        if (publication.epoch !== epoch || publication.offset !== at + 1 || at + 1 > upTo) break;
        this.deliver(publication);
      }
      const at = this.#position?.offset ?? 0;
      if (at < upTo) {
        this.emit("gap", {
          channel: this.channel,
          from: this.#position,
          to: { epoch, offset: upTo },
          reason: "unrecoverable",
        });
        this.#position = { epoch, offset: upTo };
      }
      for (const publication of held) this.deliver(publication);
    };
    this.#host.history(this.channel, from, upTo - from.offset).then(
      (history) => finish(history.publications),
      () => finish([]),
    );
  }

  #setState(state: SubscriptionState): void {
    this.#state = state;
    this.emit("state", state);
  }

  #settle(error?: SwitchyardError): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) {
      if (error) waiter.reject(error);
      else waiter.resolve();
    }
  }
}
