// A tiny state store: one object, shallow updates, subscribers told after each change.
export function createStore(initial) {
  let state = { ...initial };
  const subs = new Set();
  return {
    get: () => state,
    set(patch) {
      state = { ...state, ...(typeof patch === 'function' ? patch(state) : patch) };
      for (const fn of subs) fn(state);
    },
    subscribe(fn) { subs.add(fn); return () => subs.delete(fn); },
  };
}

// What the whole page shares: who is logged in, the device facts, the machines and the job being watched.
export const store = createStore({
  auth: { auth_required: true, logged_in: false },
  health: null,
  machines: null,
});
