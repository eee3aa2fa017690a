// The plugin's configuration: the connector config's `[plugins.<name>.config]` as JSON.

import { InvalidConfig } from './errors.js';

const kindOf = (v) => (Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v);

export class Config {
  /** `value`: the parsed JSON (null when no config is given). */
  constructor(value = null) {
    this.value = value;
  }

  static fromJson(text) {
    try {
      return new Config(JSON.parse(text));
    } catch (e) {
      throw new InvalidConfig(`config is not JSON: ${e.message}`);
    }
  }

  /**
   * The config object merged over `defaults`; a key not in `defaults` is refused (as the Rust
   * examples' `deny_unknown_fields`), so is a value of another JSON type.
   */
  settings(defaults) {
    const value = this.value ?? {};
    if (kindOf(value) !== 'object') throw new InvalidConfig(`expected a table, got ${JSON.stringify(value)}`);
    const out = { ...defaults };
    for (const [key, v] of Object.entries(value)) {
      if (!Object.hasOwn(defaults, key)) {
        const expected = Object.keys(defaults).map((k) => `\`${k}\``).join(', ');
        throw new InvalidConfig(`unknown field \`${key}\`, expected one of ${expected}`);
      }
      if (kindOf(v) !== kindOf(defaults[key])) {
        throw new InvalidConfig(`\`${key}\` must be a ${kindOf(defaults[key])}`);
      }
      out[key] = v;
    }
    return out;
  }
}
