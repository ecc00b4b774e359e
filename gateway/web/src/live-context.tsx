// The one live connection, shared by every view: views listen for events and say which
// workflows they want watched; the union goes to the server as one subscription.
// `listen` and `watch` are stable for the app's lifetime; `state` changes.
import { createContext, useContext, useEffect, useRef } from "react";
import type { ConnectionState } from "./live";
import type { LiveEvent } from "./types";

export interface Live {
  state: ConnectionState;
  detail: string;
  listen: (listener: (event: LiveEvent) => void) => () => void;
  watch: (key: string, workflowIds: string[]) => void;
}

const noop = () => undefined;

export const LiveContext = createContext<Live>({
  state: "stopped",
  detail: "",
  listen: () => noop,
  watch: noop,
});

export function useLive(): Live {
  return useContext(LiveContext);
}

/** Call `handler` for every live event while mounted (always the latest handler). */
export function useLiveEvents(handler: (event: LiveEvent) => void): void {
  const { listen } = useLive();
  const ref = useRef(handler);
  useEffect(() => {
    ref.current = handler;
  });
  useEffect(() => listen((event) => ref.current(event)), [listen]);
}

/** Keep these workflows watched while mounted. */
export function useWatchWorkflows(key: string, ids: string[]): void {
  const { watch } = useLive();
  const joined = ids.join(",");
  useEffect(() => {
    watch(key, joined ? joined.split(",") : []);
    return () => watch(key, []);
  }, [watch, key, joined]);
}
