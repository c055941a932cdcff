-- The console language a user chose (`en` or `zh`; NULL: none chosen, the browser's
-- Accept-Language decides). Set by the console's language switch while signed in.
ALTER TABLE users ADD COLUMN language TEXT;
