// A client's subscription to one channel: its own state, its publications
// in order and once each, and the gaps it could not fill. With deltas, each
// delta is applied before the application sees the publication; one that
// does not apply makes the subscription recover instead. With a filter,
// skipped offsets are the filter's doing, not gaps.

import { Emitter } from "./emitter.js";
import { SwitchyardError } from "./errors.js";
import { applyDelta } from "./fossil.js";
import type {
  ClientInfo,
  Filter,
  HistoryResult,
  Publication,
  StreamPosition,
  SubscribeRequest,
  SubscribeResult,
} from "./frames.js";
import { payload, wireData } from "./wire_data.js";

/** The largest publication a delta may rebuild. */
const MAX_DELTA_TARGET = 64 * 1024 * 1024;

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
  /**
   * `"fossil"`: ask for delta compression (granted where the namespace has
   * `delta`). The application still sees full data.
   */
  delta?: "fossil";
  /** Only publications whose tags pass this filter (evaluated by the server). */
  filter?: Filter;
}

/** What a subscription needs from its client. */
export interface SubscriptionHost {
  history(channel: string, since: StreamPosition, limit: number): Promise<HistoryResult>;
  release(subscription: Subscription): void;
  acknowledge(): void;
  /** Subscribe again on the server (with recovery, by `request()`). */
  resubscribe(subscription: Subscription): void;
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
  /** With deltas: the data bytes of the last publication, the next delta's base. */
  #base?: Uint8Array;
  /** A delta did not apply: nothing is delivered until subscribed again. */
  #resyncing = false;

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
  request(): SubscribeRequest {
    // The server starts every subscription with full data; what comes
    // before its reply belongs to the one before.
    this.#base = undefined;
    this.#resyncing = false;
    const request: SubscribeRequest = { channel: this.channel };
    if (this.#options.token) request.token = this.#options.token;
    if (this.#options.delta) request.delta = this.#options.delta;
    if (this.#options.filter) request.filter = this.#options.filter;
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
    this.#resyncing = false;
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
    if (this.#state === "unsubscribed" || this.#resyncing) return;
    if (this.#held) {
      this.#held.push(publication);
      return;
    }
    const { offset, epoch } = publication;
    const at = this.#position;
    if (offset === undefined || epoch === undefined || offset === 0) {
      if (this.#undelta(publication)) this.emit("publication", publication);
      return;
    }
    if (at && epoch === at.epoch) {
      if (offset <= at.offset) return; // had it already
      if (offset > at.offset + 1 && !this.#options.filter) {
        this.#fill(at, publication);
        return;
      }
    } else if (at && at.offset > 0) {
      // History was lost and offsets started again: say so, then go on.
      this.emit("gap", { channel: this.channel, from: at, to: { epoch, offset }, reason: "epoch" });
    }
    if (!this.#undelta(publication)) return;
    this.#position = { epoch, offset };
    this.emit("publication", publication);
    this.#host.acknowledge();
  }

  /**
   * Turns a delta into the full data it stands for, and keeps the data as
   * the next base. False when it is not to be delivered: a delta from
   * before this subscription was made again, or one that does not apply
   * (then the subscription recovers from its last position).
   */
  #undelta(publication: Publication): boolean {
    if (!this.#options.delta) return true;
    if (!publication.delta) {
      this.#base = wireData(publication);
      return true;
    }
    const base = this.#base;
    const delta = wireData(publication);
    if (!base || !delta) return false;
    let data: Uint8Array;
    try {
      data = applyDelta(base, delta, MAX_DELTA_TARGET);
    } catch {
      this.#base = undefined;
      this.#resyncing = true;
      this.#host.resubscribe(this);
      return false;
    }
    this.#base = data;
    publication.data = payload(data);
    delete publication.delta;
    return true;
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
