// The errors a plugin throws: the kind tells the operator what to fix.

/** Any other failure (the WIT `failed` case). */
export class PluginError extends Error {
  get kind() {
    return 'failed';
  }

  /** The text the host records, as the Rust SDK formats it. */
  display() {
    return this.message;
  }
}

/** The plugin's configuration is wrong (the operator must fix the config). */
export class InvalidConfig extends PluginError {
  get kind() {
    return 'invalid-config';
  }

  display() {
    return `invalid plugin config: ${this.message}`;
  }
}

/** The table or value is something the plugin cannot handle. */
export class Unsupported extends PluginError {
  get kind() {
    return 'unsupported';
  }

  display() {
    return `unsupported: ${this.message}`;
  }
}
