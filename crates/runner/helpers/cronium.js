// Cronium runtime helpers for node scripts: the global `cronium`, also
// `require('cronium')`. The runner that started this script preloads this
// file (NODE_OPTIONS=--require) and puts its directory on NODE_PATH.
//
// Every call is synchronous: it runs the runner's `cronium` command with an
// argument list (never a shell) and passes values on its stdin. See
// docs/helpers.md.
'use strict';

const { execFileSync } = require('child_process');
const path = require('path');

// bin/cronium beside this file's directory: a symlink to the runner itself.
const COMMAND = path.join(__dirname, '..', 'bin', 'cronium');

// What each exit status of `cronium` means, for when its stderr is unreadable.
const CODES = {
  1: 'not_found',
  2: 'usage',
  3: 'invalid',
  4: 'too_large',
  5: 'conflict',
  6: 'unavailable',
  7: 'internal',
};

function helperError(code, message) {
  const error = new Error(`cronium: ${message}`);
  error.code = code;
  return error;
}

function encode(value) {
  let json;
  try {
    json = JSON.stringify(value);
  } catch (e) {
    throw helperError('invalid', `the value is not JSON: ${e.message}`);
  }
  if (json === undefined) {
    throw helperError('invalid', `the value is not JSON: ${typeof value}`);
  }
  return json;
}

function checkKey(key) {
  if (typeof key !== 'string') {
    throw helperError('invalid', `a variable key must be a string, not ${typeof key}`);
  }
  // An argument cannot hold NUL; the server would refuse it anyway.
  if (key.includes('\0')) {
    throw helperError('invalid', 'a variable key cannot contain NUL');
  }
  return key;
}

// Runs `cronium <args>`; returns its stdout parsed as JSON (null when empty).
function run(args, input) {
  if (!process.env.CRONIUM_HELPER_SOCKET) {
    throw helperError('unavailable', 'not inside a Cronium run (CRONIUM_HELPER_SOCKET is not set)');
  }
  let stdout;
  try {
    stdout = execFileSync(COMMAND, ['--json-errors', ...args], {
      input: input === undefined ? '' : input,
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (e) {
    if (typeof e.status !== 'number') {
      throw helperError('unavailable', `cannot run ${COMMAND}: ${e.message}`);
    }
    const stderr = String(e.stderr || '').trim();
    try {
      const reply = JSON.parse(stderr);
      if (reply && typeof reply.error === 'string') {
        throw helperError(reply.error, reply.message || reply.error);
      }
    } catch (parsed) {
      if (parsed instanceof Error && parsed.code) throw parsed;
    }
    throw helperError(CODES[e.status] || 'internal', stderr.replace(/^cronium: /, '') || `exit status ${e.status}`);
  }
  return stdout.trim() === '' ? null : JSON.parse(stdout);
}

const cronium = {
  /** The run's input (the JSON it was started with, or the previous event's output); null when none. */
  input() {
    return run(['input']);
  },

  /** Sets this attempt's output (any JSON value, at most 1 MiB), replacing an earlier one. */
  output(value) {
    run(['output', '-'], encode(value));
  },

  /** The variable's value, or `dflt` (null unless given) if it does not exist. */
  getVariable(key, dflt = null) {
    try {
      return run(['var', 'get', '--', checkKey(key)]);
    } catch (e) {
      if (e.code === 'not_found') return dflt;
      throw e;
    }
  },

  /**
   * Writes a variable (any JSON value, at most 64 KiB). Options: `secret`
   * (true/false; unset keeps the current secrecy), `expect` (the current value
   * must equal it) or `expectAbsent: true` (it must not exist). Returns true,
   * or false when the expectation did not hold (nothing written).
   */
  setVariable(key, value, options = {}) {
    const { secret, expect, expectAbsent } = options || {};
    const args = ['var', 'set'];
    if (secret === true) args.push('--secret');
    else if (secret === false) args.push('--no-secret');
    else if (secret !== undefined && secret !== null) {
      throw helperError('invalid', 'secret must be true, false or undefined');
    }
    if (expectAbsent) {
      if (expect !== undefined) throw helperError('invalid', 'expect and expectAbsent exclude each other');
      args.push('--expect-absent');
    } else if (expect !== undefined) {
      args.push('--expect', encode(expect));
    }
    args.push('--', checkKey(key), '-');
    try {
      run(args, encode(value));
    } catch (e) {
      if (e.code === 'conflict') return false;
      throw e;
    }
    return true;
  },

  /** Deletes a variable; true if it existed. */
  deleteVariable(key) {
    try {
      run(['var', 'delete', '--', checkKey(key)]);
    } catch (e) {
      if (e.code === 'not_found') return false;
      throw e;
    }
    return true;
  },

  /** Sets the run's condition (false unless set). */
  setCondition(value) {
    if (typeof value !== 'boolean') throw helperError('invalid', 'the condition must be true or false');
    run(['condition', String(value)]);
  },

  /** Facts about the run: jobId, attempt, event, trigger, server. */
  context() {
    return run(['context']);
  },
};

globalThis.cronium = cronium;
module.exports = cronium;
